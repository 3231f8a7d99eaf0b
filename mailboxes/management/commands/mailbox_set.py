"""Give an employee a mailbox, or change its address and allow-list."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from aiworkforce.audit import Actor
from employees.models import Employee
from mailboxes.models import Mailbox
from mailboxes.services import mailbox_set


class Command(BaseCommand):
    help = "Give an employee a mailbox: mailbox_set HANDLE ADDRESS [--allow example.com]..."

    def add_arguments(self, parser) -> None:
        parser.add_argument("handle", help="The employee's handle, with or without @.")
        parser.add_argument("address", help="The address it receives mail at.")
        parser.add_argument(
            "--allow",
            action="append",
            default=None,
            metavar="SENDER",
            help="A domain (example.com, *.example.com) or address whose mail runs as a task; "
            "repeat for more. Without --allow an existing allow-list is kept.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Check, change nothing.")

    def handle(self, *args, handle: str, address: str, allow, dry_run: bool, **options) -> None:
        employee = Employee.objects.filter(handle=handle.lstrip("@")).first()
        if employee is None:
            raise CommandError(f"No employee with the handle {handle!r}.")
        if allow is None:
            current = Mailbox.objects.filter(employee=employee).first()
            allow = current.allowed_senders if current else []
        if dry_run:
            self.stdout.write(f"Would give @{employee.handle} {address} (allow: {allow}).")
            return
        try:
            mailbox = mailbox_set(
                employee=employee,
                address=address,
                allowed_senders=allow,
                actor=Actor.system("mailbox_set command"),
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        allowed = ", ".join(mailbox.allowed_senders) or "nobody (all mail is held)"
        self.stdout.write(
            f"@{employee.handle} receives mail at {mailbox.address}; runs mail from {allowed}."
        )
