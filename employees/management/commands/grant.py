"""Grant an employee a tool, built-in or MCP, from the command line."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from aiworkforce.audit import Actor
from employees.models import Employee, ToolGrant, ToolPolicy
from employees.services import tool_grant_save
from tasks.mcp import client
from tasks.mcp.services import (
    default_policy,
    definition_diff,
    grant_reapprove,
    mcp_tool_definition,
    mcp_tools_refresh,
    split_tool_name,
)
from tasks.models import McpServer

ACTOR = Actor.system("command line")
POLICIES = {
    "auto": ToolPolicy.AUTO,
    "approval": ToolPolicy.NEEDS_APPROVAL,
    "never": ToolPolicy.NEVER,
}


def employee_by_handle(handle: str) -> Employee:
    employee = Employee.objects.filter(handle=handle.lstrip("@")).first()
    if employee is None:
        raise CommandError(f"There is no employee with the handle '{handle.lstrip('@')}'.")
    return employee


class Command(BaseCommand):
    help = (
        "Grant a tool: grant HANDLE TOOL [--scope JSON] [--policy auto|approval|never] "
        "[--reapprove] (an MCP tool is named mcp:SERVER/TOOL)"
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("handle")
        parser.add_argument("tool")
        parser.add_argument("--scope", help="The grant's scope, a JSON object (default {}).")
        parser.add_argument(
            "--policy",
            choices=sorted(POLICIES),
            help="auto, approval or never (default for a new MCP grant: auto when the tool is "
            "read-only, else approval; for a built-in tool: approval).",
        )
        parser.add_argument(
            "--reapprove",
            action="store_true",
            help="Accept an MCP tool's changed description and schema (lifts its suspension).",
        )

    def handle(self, *args, handle: str, tool: str, scope, policy, reapprove: bool, **options):
        employee = employee_by_handle(handle)
        try:
            scope_value = json.loads(scope) if scope is not None else None
        except ValueError as exc:
            raise CommandError(f"--scope is not valid JSON ({exc}).") from None
        mcp = split_tool_name(tool)
        if tool.startswith("mcp:") and mcp is None:
            raise CommandError(f"'{tool}' is not an MCP tool name: use mcp:SERVER/TOOL.")
        if mcp is not None:
            self._know_mcp_tool(tool, *mcp)
        grant = ToolGrant.objects.filter(employee=employee, tool_name=tool).first()
        if grant is not None and grant.suspended_at is not None:
            self._review(grant, reapprove)
        created = grant is None
        if created:
            grant = ToolGrant(employee=employee, tool_name=tool)
            grant.policy = ToolPolicy.NEEDS_APPROVAL
            if mcp is not None:
                grant.policy = default_policy(mcp_tool_definition(tool))
        if scope_value is not None:
            grant.scope = scope_value
        if policy:
            grant.policy = POLICIES[policy]
        try:
            tool_grant_save(grant=grant, actor=ACTOR)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        verb = "Granted" if created else "Changed the grant of"
        scope_text = f", scope {json.dumps(grant.scope)}" if grant.scope else ""
        self.stdout.write(
            f"{verb} {tool} to @{employee.handle}: {grant.get_policy_display().lower()}{scope_text}."
        )

    def _know_mcp_tool(self, tool: str, server_name: str, tool_name: str) -> None:
        """The tool as its server lists it now (listed once more if it is not known yet)."""
        if mcp_tool_definition(tool) is not None:
            return
        server = McpServer.objects.filter(name=server_name).first()
        if server is None:
            raise CommandError(
                f"There is no MCP server called '{server_name}': add it first with "
                f"./workforce manage mcp add {server_name} --url URL | --command CMD"
            )
        try:
            mcp_tools_refresh(server=server, actor=ACTOR)
        except client.McpError as exc:
            raise CommandError(f"Cannot list the tools of '{server_name}': {exc}") from None
        if mcp_tool_definition(tool) is None:
            raise CommandError(
                f"'{server_name}' offers no tool called '{tool_name}'; see "
                f"./workforce manage mcp tools {server_name}"
            )

    def _review(self, grant: ToolGrant, reapprove: bool) -> None:
        changes = definition_diff(grant.pinned_definition, mcp_tool_definition(grant.tool_name))
        if not reapprove:
            raise CommandError(
                f"{grant.tool_name} is suspended for @{grant.employee.handle}: "
                f"{grant.suspended_reason}\n  "
                + "\n  ".join(changes)
                + "\nReview the change; to accept it, run this command again with --reapprove."
            )
        if mcp_tool_definition(grant.tool_name) is None:
            raise CommandError(f"{grant.tool_name} is no longer offered: revoke the grant instead.")
        grant_reapprove(grant=grant, actor=ACTOR)
        self.stdout.write(
            f"Re-approved {grant.tool_name} for @{grant.employee.handle} as it is now."
        )
