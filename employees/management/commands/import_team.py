"""Create a team's employees from a team file: ./workforce manage import_team team.json."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from employees.hiring.services import HIRE_STATUSES, ImportRefused, team_import
from employees.hiring.spec import SpecError
from employees.models import Team


class _DryRun(Exception):
    pass


class Command(BaseCommand):
    help = (
        "Import a team file (from export_team) as a new team, all or nothing. Never overwrites: "
        "an existing team name or handle refuses the import unless you say otherwise "
        "(--into, --team-name, --rename-conflicts). Employees start in shadow mode."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="The team file (JSON); '-' reads standard input.")
        parser.add_argument("--into", help="Add the employees to this existing team instead.")
        parser.add_argument("--team-name", default="", help="Create the team under this name.")
        parser.add_argument(
            "--rename-conflicts",
            action="store_true",
            help="Give employees whose handle is taken a free one (ava-support → ava-support-2).",
        )
        parser.add_argument(
            "--status",
            default="shadow",
            choices=[str(s) for s in HIRE_STATUSES],
            help="How the employees start (default: shadow).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check everything, save nothing."
        )

    def handle(
        self,
        *args,
        file: str,
        into=None,
        team_name="",
        rename_conflicts=False,
        status="shadow",
        dry_run=False,
        **options,
    ) -> None:
        try:
            if file == "-":
                data = json.load(sys.stdin)
            else:
                with open(file, encoding="utf-8") as handle:
                    data = json.load(handle)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.") from None
        except ValueError as exc:
            raise CommandError(f"{file} is not valid JSON: {exc}.") from None
        target = None
        if into:
            target = Team.objects.filter(name=into).first()
            if target is None:
                raise CommandError(f"There is no team called '{into}' to import into.")
        try:
            with transaction.atomic():
                result = team_import(
                    data=data,
                    into=target,
                    team_name=team_name,
                    rename_conflicts=rename_conflicts,
                    status=status,
                )
                if dry_run:
                    raise _DryRun
        except _DryRun:
            self.stdout.write("Dry run: the file would import cleanly; nothing was saved.")
            return
        except ImportRefused as exc:
            raise CommandError(str(exc)) from None
        except SpecError as exc:
            lines = "\n".join(
                f"  - {where}: {message}" if where else f"  - {message}"
                for where, message in exc.errors
            )
            raise CommandError(f"Nothing was imported; the file has problems:\n{lines}") from None
        for old, new in result.renamed.items():
            self.stdout.write(f"@{old} was taken: imported as @{new}.")
        for note in result.notes:
            self.stdout.write(note)
        verb = "Created the team" if result.created_team else "Imported into the team"
        handles = ", ".join(f"@{e.handle}" for e in result.employees)
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} '{result.team.name}': {len(result.employees)} employees ({handles}), "
                f"in {status} mode."
            )
        )
