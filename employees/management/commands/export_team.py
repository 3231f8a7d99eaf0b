"""Write a team as a team file (JSON) to standard output: ./workforce manage export_team "TEAM"."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from employees.hiring.selectors import suspended_grants, team_file
from employees.models import Team


class Command(BaseCommand):
    help = (
        "Export a team as a team file: briefs, SOPs, tool grants (without secrets), duties, "
        "working hours, budgets, knowledge and golden tasks. Import it with import_team."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("team", help="The team's name, exactly as shown.")
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")

    def handle(self, *args, team: str, output: str | None = None, **options) -> None:
        found = Team.objects.filter(name=team).first()
        if found is None:
            names = ", ".join(Team.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"There is no team called '{team}'. Teams: {names}.")
        text = json.dumps(team_file(found), indent=2, ensure_ascii=False) + "\n"
        for left_out in suspended_grants(found):
            self.stderr.write(f"Left out a suspended grant (review it first): {left_out}")
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stderr.write(f"Wrote the team '{found.name}' to {output}.")
        else:
            self.stdout.write(text, ending="")
