"""MCP tool servers from the command line: add one, list its tools, check that it answers."""

from __future__ import annotations

import json
import shlex
import time

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from aiworkforce.audit import Actor
from employees.models import Employee
from tasks.mcp import client
from tasks.mcp.services import (
    mcp_credential_remove,
    mcp_credential_set,
    mcp_server_add,
    mcp_tools_refresh,
    server_spec,
)
from tasks.models import McpCredential, McpServer

ACTOR = Actor.system("command line")


def _pairs(values: list[str], separator: str, flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, found, rest = value.partition(separator)
        if not found or not key.strip():
            # Not echoed: the value may be a secret.
            raise CommandError(f"Each {flag} must look like NAME{separator}VALUE; one does not.")
        pairs[key.strip()] = rest.strip() if separator == ":" else rest
    return pairs


class Command(BaseCommand):
    help = "MCP tool servers: mcp add NAME (--url URL | --command CMD) | mcp tools NAME | mcp check NAME [--as HANDLE] | mcp credential NAME HANDLE (--header|--env|--remove) | mcp list"

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="add|tools|check|credential|list"
        )
        add = actions.add_parser(
            "add", help="Register a server (its secrets are stored encrypted)."
        )
        add.add_argument("name")
        where = add.add_mutually_exclusive_group(required=True)
        where.add_argument("--url", help="The streamable-HTTP endpoint.")
        where.add_argument(
            "--command", help='The stdio server\'s command line, e.g. "npx orders-mcp".'
        )
        add.add_argument(
            "--header",
            action="append",
            default=[],
            metavar='"NAME: VALUE"',
            help="HTTP header (repeatable).",
        )
        add.add_argument(
            "--env",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Environment value (repeatable).",
        )
        tools = actions.add_parser(
            "tools", help="List the server's tools now (and suspend changed grants)."
        )
        tools.add_argument("name")
        tools.add_argument("--json", action="store_true", help="Print JSON.")
        check = actions.add_parser("check", help="Connect, list, report the latency or the error.")
        check.add_argument("name")
        check.add_argument(
            "--as", dest="handle", metavar="HANDLE", help="Connect with this employee's credential."
        )
        credential = actions.add_parser(
            "credential",
            help="Give an employee its own secrets for a server (stored encrypted), or --remove them.",
        )
        credential.add_argument("name")
        credential.add_argument("handle")
        credential.add_argument("--header", action="append", default=[], metavar='"NAME: VALUE"')
        credential.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
        credential.add_argument("--remove", action="store_true", help="Delete its credential.")
        actions.add_parser("list", help="The registered servers.")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"_{action}")(**options)

    def _server(self, name: str) -> McpServer:
        server = McpServer.objects.filter(name=name).first()
        if server is None:
            known = ", ".join(McpServer.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"There is no MCP server called '{name}' (registered: {known}).")
        return server

    def _add(self, *, name, url, command, header, env, **_options) -> None:
        try:
            argv = shlex.split(command) if command else None
        except ValueError as exc:
            raise CommandError(f"The command line cannot be read: {exc}.") from None
        try:
            server = mcp_server_add(
                name=name,
                actor=ACTOR,
                url=url or "",
                headers=_pairs(header, ":", "--header"),
                command=argv,
                env=_pairs(env, "=", "--env"),
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        where = server.location
        secrets = (
            f"; secrets stored encrypted: {', '.join(server.secret_names)}"
            if server.secret_names
            else ""
        )
        self.stdout.write(
            f"Added MCP server '{server.name}' ({server.transport}: {where}){secrets}."
        )
        try:
            tools = mcp_tools_refresh(server=server, actor=ACTOR)
        except client.McpError as exc:
            self.stderr.write(
                f"It does not answer yet: {exc}\nFix it, then run: ./workforce manage mcp check {server.name}"
            )
            return
        names = ", ".join(f"mcp:{server.name}/{tool.name}" for tool in tools) or "none"
        self.stdout.write(
            f"It offers {len(tools)} tools: {names}. Grant one with: ./workforce manage grant HANDLE TOOL"
        )

    def _tools(self, *, name, json: bool = False, **_options) -> None:
        server = self._server(name)
        try:
            tools = mcp_tools_refresh(server=server, actor=ACTOR)
        except client.McpError as exc:
            raise CommandError(str(exc)) from None
        if json:
            self.stdout.write(
                _json(
                    [{"tool": f"mcp:{server.name}/{row.name}", **row.definition} for row in tools]
                )
            )
            return
        if not tools:
            self.stdout.write(f"'{server.name}' offers no tools.")
        for row in tools:
            definition = row.definition
            hints = (
                ", ".join(f"{key}={value}" for key, value in definition["annotations"].items())
                or "no hints"
            )
            self.stdout.write(f"mcp:{server.name}/{row.name}  ({hints})")
            self.stdout.write(f"    {definition['description'] or '(no description)'}")
            self.stdout.write(f"    input: {_json(definition['input_schema'], indent=None)}")

    def _employee(self, handle: str) -> Employee:
        employee = Employee.objects.filter(handle=handle).first()
        if employee is None:
            raise CommandError(f"There is no employee with the handle '{handle}'.")
        return employee

    def _credential(self, *, name, handle, header, env, remove, **_options) -> None:
        server, employee = self._server(name), self._employee(handle)
        if remove:
            credential = McpCredential.objects.filter(server=server, employee=employee).first()
            if credential is None or not mcp_credential_remove(credential=credential, actor=ACTOR):
                raise CommandError(f"{employee.handle} has no credential of its own for '{name}'.")
            self.stdout.write(f"Removed {employee.handle}'s credential for '{name}'.")
            return
        try:
            credential = mcp_credential_set(
                server=server,
                employee=employee,
                actor=ACTOR,
                headers=_pairs(header, ":", "--header"),
                env=_pairs(env, "=", "--env"),
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(
            f"{employee.handle} now reaches '{name}' with its own "
            f"{', '.join(credential.secret_names)} (stored encrypted). "
            f"Check it: ./workforce manage mcp check {name} --as {employee.handle}"
        )

    def _check(self, *, name, handle=None, **_options) -> None:
        server = self._server(name)
        credential = None
        if handle:
            credential = McpCredential.objects.filter(
                server=server, employee=self._employee(handle)
            ).first()
            if credential is None:
                raise CommandError(f"{handle} has no credential of its own for '{name}'.")
        started = time.perf_counter()
        try:
            tools = client.list_tools(
                server_spec(server, credential), timeout=settings.MCP_TIMEOUT_SECONDS
            )
        except client.McpError as exc:
            raise CommandError(f"{server.name}: {exc}") from None
        elapsed = (time.perf_counter() - started) * 1000
        self.stdout.write(
            f"{server.name}: answers, {len(tools)} tools, {elapsed:.0f} ms to connect and list."
        )

    def _list(self, **_options) -> None:
        servers = McpServer.objects.prefetch_related("tools")
        if not servers:
            self.stdout.write(
                "No MCP servers yet: ./workforce manage mcp add NAME --url URL | --command CMD"
            )
        for server in servers:
            where = server.location
            state = (
                f"error: {server.last_error}"
                if server.last_error
                else f"{server.tools.count()} tools"
            )
            own = server.credentials.count()
            credentials = f", {own} employee credentials" if own else ""
            self.stdout.write(f"{server.name}  {server.transport}  {where}  ({state}{credentials})")


def _json(value, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False)
