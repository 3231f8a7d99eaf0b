"""Take a tool away from an employee, from the command line."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from aiworkforce.audit import Actor
from employees.management.commands.grant import employee_by_handle
from employees.models import ToolGrant
from employees.services import tool_grant_revoke


class Command(BaseCommand):
    help = "Revoke a tool: revoke HANDLE TOOL"

    def add_arguments(self, parser) -> None:
        parser.add_argument("handle")
        parser.add_argument("tool")

    def handle(self, *args, handle: str, tool: str, **options) -> None:
        employee = employee_by_handle(handle)
        grant = ToolGrant.objects.filter(employee=employee, tool_name=tool).first()
        if grant is None:
            granted = ", ".join(employee.tool_grants.values_list("tool_name", flat=True)) or "none"
            raise CommandError(f"@{employee.handle} has no grant for {tool} (it has: {granted}).")
        tool_grant_revoke(grant=grant, actor=Actor.system("command line"))
        self.stdout.write(f"Revoked {tool} from @{employee.handle}.")
