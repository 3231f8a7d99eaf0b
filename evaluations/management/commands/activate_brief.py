"""Make one of an employee's brief versions live, through the same gate as the page.

    ./workforce manage activate_brief HANDLE N [--override-reason TEXT]

The version goes live when its latest evaluation passes at least as many of the golden tasks
(as a rate) as the live version's does; otherwise only with --override-reason (audited).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from aiworkforce.audit import Actor
from employees.models import BriefVersion, Employee
from evaluations.activation import ActivationRefused, brief_version_activate


class Command(BaseCommand):
    help = (
        "Make a brief version live if it passes the golden tasks at least as well as the live one."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("handle")
        parser.add_argument("number", type=int, help="The brief version's number (e.g. 5).")
        parser.add_argument(
            "--override-reason",
            default="",
            metavar="TEXT",
            help="Why it may go live although the gate refuses it (recorded in the audit trail).",
        )

    def handle(self, *args, handle: str, number: int, override_reason: str, **options):
        handle = handle.lstrip("@")
        employee = Employee.objects.filter(handle=handle).first()
        if employee is None:
            raise CommandError(f"There is no employee @{handle}.")
        version = BriefVersion.objects.filter(employee=employee, number=number).first()
        if version is None:
            last = employee.brief_versions.count()
            raise CommandError(
                f"@{handle} has no brief version {number}"
                + (f" (versions 1 to {last})." if last else " (no versions saved).")
            )
        try:
            brief_version_activate(
                employee=employee,
                version=version,
                actor=Actor.system("command line"),
                override_reason=override_reason,
            )
        except ActivationRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"v{number} is now the live brief of @{handle}.")
