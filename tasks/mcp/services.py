"""MCP servers and their tools: register a server, list its tools, pin and suspend grants.

Every change is audited; a server's environment values and headers are stored encrypted
(aiworkforce.secrets) and appear nowhere else: not in the audit trail, steps, prompts or logs.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import jsonschema
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from aiworkforce.secrets import decrypt_secret, encrypt_secret
from employees.models import Employee, ToolGrant, ToolPolicy
from tasks.mcp import client
from tasks.models import McpCredential, McpServer, McpTool, McpTransport

logger = logging.getLogger(__name__)

PREFIX = "mcp:"
_NAME = re.compile(r"^(?!.*__)[a-z0-9][a-z0-9_-]{0,39}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What MCP allows a tool's name to be (the spec's SHOULD), and what we store.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def split_tool_name(tool_name: str) -> tuple[str, str] | None:
    """("orders", "lookup_order") for "mcp:orders/lookup_order"; None for any other name."""
    if not tool_name.startswith(PREFIX) or "/" not in tool_name:
        return None
    server, _, tool = tool_name[len(PREFIX) :].partition("/")
    return (server, tool) if server and tool else None


def mcp_server_validate(
    *,
    name: str,
    url: str = "",
    headers: dict[str, str] | None = None,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> McpServer:
    """The server as it would be added (not saved), or ValidationError saying what is wrong."""
    name = (name or "").strip()
    if not _NAME.match(name):
        raise ValidationError(
            f"'{name}' is not a usable server name: use 1 to 40 lower-case letters, digits, - or "
            "_ (not two _ in a row), starting with a letter or digit (its tools are called "
            "mcp:NAME/TOOL)."
        )
    if McpServer.objects.filter(name=name).exists():
        raise ValidationError(f"There is already an MCP server called '{name}'.")
    if bool(url) == bool(command):
        raise ValidationError("Give either a URL (streamable HTTP) or a command (stdio).")
    headers, env = headers or {}, env or {}
    if url:
        if not re.match(r"^https?://", url):
            raise ValidationError(f"'{client.display_url(url)}' is not an http:// or https:// URL.")
        if urlsplit(url).username is not None:
            raise ValidationError(
                'Put credentials in a header (e.g. --header "Authorization: Bearer …"), not '
                "in the URL, where they would be shown and logged."
            )
    _check_secrets(http=bool(url), headers=headers, env=env)
    server = McpServer(
        name=name,
        transport=McpTransport.HTTP if url else McpTransport.STDIO,
        url=url,
        command=command[0] if command else "",
        args=list(command[1:]) if command else [],
        secret_names=sorted(headers) if url else sorted(env),
    )
    if headers or env:
        server.secrets_encrypted = encrypt_secret(json.dumps({"env": env, "headers": headers}))
    server.full_clean(exclude=["secrets_encrypted", "secret_names"])
    return server


def _check_secrets(*, http: bool, headers: dict[str, str], env: dict[str, str]) -> None:
    """Headers for an HTTP server, environment values for a stdio one; values never echoed."""
    if http and env:
        raise ValidationError("Environment values are for a command (stdio), not a URL.")
    if not http and headers:
        raise ValidationError("Headers are for a URL (streamable HTTP), not a command.")
    for header, value in headers.items():
        if not _HEADER_NAME.match(header):
            raise ValidationError(f"'{header}' is not a valid HTTP header name.")
        if _CONTROL.search(value) or not value.isascii():
            raise ValidationError(
                f"The value of the header '{header}' holds a line break, a control "
                "character or non-ASCII text."
            )
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            raise ValidationError(f"'{key}' is not a valid environment variable name.")
        if "\x00" in value:
            raise ValidationError(f"The value of '{key}' holds a NUL character.")


def mcp_server_add(
    *,
    name: str,
    actor: Actor,
    url: str = "",
    headers: dict[str, str] | None = None,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> McpServer:
    """Register a server, over streamable HTTP (url, headers) or stdio (command, env)."""
    server = mcp_server_validate(name=name, url=url, headers=headers, command=command, env=env)
    with transaction.atomic():
        server.save()
        audit_log(
            action="mcp.server_added",
            actor=actor,
            subject=server,
            # Names of secrets only: never their values.
            data={
                "transport": server.transport,
                "url": client.display_url(server.url),
                "command": server.command,
                "args": server.args,
                "secret_names": server.secret_names,
            },
        )
    return server


def _decrypted(token: str) -> dict:
    return json.loads(decrypt_secret(token)) if token else {}


def server_spec(server: McpServer, credential: McpCredential | None = None) -> client.ServerSpec:
    """How to reach the server, secrets decrypted (keep it in memory; never log it); with an
    employee's credential, its values replace the server's shared ones of the same name."""
    secrets = _decrypted(server.secrets_encrypted)
    own = _decrypted(credential.secrets_encrypted) if credential is not None else {}
    env = {**secrets.get("env", {}), **own.get("env", {})}
    # Header names are case-insensitive: an employee's "authorization" replaces the shared
    # "Authorization" instead of being sent beside it.
    by_name = {name.lower(): (name, value) for name, value in secrets.get("headers", {}).items()}
    by_name.update({name.lower(): (name, value) for name, value in own.get("headers", {}).items()})
    headers = dict(by_name.values())
    return client.ServerSpec(
        name=server.name,
        transport=server.transport,
        command=server.command,
        args=tuple(server.args),
        env=tuple(sorted(env.items())),
        url=server.url,
        headers=tuple(sorted(headers.items())),
    )


def mcp_credential_set(
    *,
    server: McpServer,
    employee: Employee,
    actor: Actor,
    headers: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> McpCredential:
    """Give an employee its own secrets for a server (replacing any it had): its calls send
    them instead of the server's shared ones of the same name."""
    headers, env = headers or {}, env or {}
    if not headers and not env:
        raise ValidationError("Give the employee's own --header (HTTP) or --env (stdio) values.")
    _check_secrets(http=server.transport == McpTransport.HTTP, headers=headers, env=env)
    with transaction.atomic():
        credential, created = McpCredential.objects.update_or_create(
            server=server,
            employee=employee,
            defaults={
                "secrets_encrypted": encrypt_secret(json.dumps({"env": env, "headers": headers})),
                "secret_names": sorted(headers) or sorted(env),
            },
        )
        audit_log(
            action="mcp.credential_set",
            actor=actor,
            subject=employee,
            data={
                "server": server.name,
                "names": credential.secret_names,
                "replaced": not created,
            },
        )
    return credential


def mcp_credential_remove(*, credential: McpCredential, actor: Actor) -> bool:
    """Delete an employee's own secrets for a server; False when already gone."""
    with transaction.atomic():
        deleted, _ = McpCredential.objects.filter(pk=credential.pk).delete()
        if deleted:
            audit_log(
                action="mcp.credential_removed",
                actor=actor,
                subject=credential.employee,
                data={"server": credential.server.name, "names": credential.secret_names},
            )
    return bool(deleted)


def mcp_credentials_remove_for(*, employee: Employee, actor: Actor) -> int:
    """Delete every MCP credential of an employee (offboarding); how many there were."""
    credentials = McpCredential.objects.filter(employee=employee).select_related("server")
    return sum(mcp_credential_remove(credential=c, actor=actor) for c in credentials)


def mcp_tools_refresh(*, server: McpServer, actor: Actor) -> list[McpTool]:
    """List the server's tools now, store them, and suspend grants whose tool changed.

    Raises client.McpError (and records it on the server) when it cannot be listed.
    """
    try:
        definitions = client.list_tools(server_spec(server), timeout=settings.MCP_TIMEOUT_SECONDS)
    except client.McpError as exc:
        McpServer.objects.filter(pk=server.pk).update(
            last_checked_at=timezone.now(), last_error=str(exc)[:500]
        )
        raise
    now = timezone.now()
    definitions = [
        definition for definition in definitions if _storable_definition(server, definition)
    ]
    with transaction.atomic():
        rows = []
        for definition in definitions:
            row, _ = McpTool.objects.update_or_create(
                server=server,
                name=definition.name,
                defaults={"definition": definition.as_json(), "seen_at": now},
            )
            rows.append(row)
        McpTool.objects.filter(server=server).exclude(
            name__in=[definition.name for definition in definitions]
        ).delete()
        McpServer.objects.filter(pk=server.pk).update(last_checked_at=now, last_error="")
        current = {row.name: row.definition for row in rows}
        for grant in ToolGrant.objects.filter(
            tool_name__startswith=f"{PREFIX}{server.name}/", suspended_at__isnull=True
        ):
            _, tool = split_tool_name(grant.tool_name)
            if current.get(tool) != grant.pinned_definition:
                grant_suspend(grant=grant, live=current.get(tool), actor=actor)
    return rows


def mcp_servers_check_due(*, now=None) -> int:
    """List again the tools of each server whose tools are granted, when it was last listed
    over MCP_TOOLS_CACHE_SECONDS (at least a minute) ago, so that a changed tool is suspended
    before the model is offered it. A server that does not answer keeps the error on its row.
    Returns how many grants were suspended."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=max(settings.MCP_TOOLS_CACHE_SECONDS, 60))
    active = ToolGrant.objects.filter(tool_name__startswith=PREFIX, suspended_at__isnull=True)
    granted = {split_tool_name(name)[0] for name in active.values_list("tool_name", flat=True)}
    due = McpServer.objects.filter(name__in=granted).filter(
        Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=cutoff)
    )
    before = ToolGrant.objects.filter(suspended_at__isnull=False).count()
    for server in due:
        try:
            mcp_tools_refresh(server=server, actor=Actor.system("tool check"))
        except client.McpError:
            continue  # recorded on the server; its grants are checked again at each call
        except Exception:  # one server's fault must not stop the others' checks
            logger.exception("MCP server '%s': listing its tools failed", server.name)
    return ToolGrant.objects.filter(suspended_at__isnull=False).count() - before


def _storable_definition(server: McpServer, definition: client.ToolDefinition) -> bool:
    """A tool whose name MCP allows, whose schema is a JSON schema, and that PostgreSQL can
    store (no NUL, no NaN); any other is left out, with a warning, rather than failing all."""
    problem = None
    if not _TOOL_NAME.match(definition.name):
        problem = "its name is not 1 to 128 letters, digits, '_', '.' or '-'"
    else:
        try:
            text = json.dumps(definition.as_json(), allow_nan=False)
            jsonschema.Draft202012Validator.check_schema(definition.input_schema)
        except (ValueError, jsonschema.SchemaError) as exc:
            problem = f"its definition cannot be used ({str(exc)[:200]})"
        else:
            if "\\u0000" in text:
                problem = "its definition holds a NUL character"
    if problem:
        logger.warning(
            "MCP server '%s': tool %r left out: %s", server.name, definition.name[:130], problem
        )
    return problem is None


def default_policy(definition: dict) -> str:
    """Read-only tools run automatically; any other needs approval (MCP's destructiveHint
    defaults to true)."""
    read_only = definition.get("annotations", {}).get("readOnlyHint") is True
    return ToolPolicy.AUTO if read_only else ToolPolicy.NEEDS_APPROVAL


def mcp_tool_definition(tool_name: str) -> dict | None:
    """The definition last listed for "mcp:SERVER/TOOL", or None."""
    parts = split_tool_name(tool_name)
    if parts is None:
        return None
    row = McpTool.objects.filter(server__name=parts[0], name=parts[1]).first()
    return row.definition if row else None


def grant_pin(*, grant: ToolGrant) -> None:
    """Pin an MCP grant to the tool's definition as listed now (before the grant is saved)."""
    definition = mcp_tool_definition(grant.tool_name)
    if definition is None:
        raise ValidationError(
            f"{grant.tool_name} is not a tool its server offered when last listed; run "
            f"./workforce manage mcp tools {split_tool_name(grant.tool_name)[0]} first."
        )
    grant.pinned_definition = definition
    grant.suspended_at, grant.suspended_reason = None, ""


def grant_suspend(*, grant: ToolGrant, live: dict | None, actor: Actor) -> bool:
    """The server now serves another definition (or none): the model no longer sees the tool."""
    reason = (
        "its server no longer offers it"
        if live is None
        else "its server now describes it differently than when it was granted"
    )
    parts = split_tool_name(grant.tool_name)
    if parts is not None:
        # What the manager reviews and re-approves is what the server serves now.
        rows = McpTool.objects.filter(server__name=parts[0], name=parts[1])
        if live is None:
            rows.delete()
        else:
            rows.update(definition=live, seen_at=timezone.now())
    updated = ToolGrant.objects.filter(pk=grant.pk, suspended_at__isnull=True).update(
        suspended_at=timezone.now(), suspended_reason=f"Suspended: {reason}."
    )
    if updated:
        audit_log(
            action="tool.grant_suspended",
            actor=actor,
            subject=grant.employee,
            data={
                "tool": grant.tool_name,
                "reason": reason,
                "changes": definition_diff(grant.pinned_definition, live),
            },
        )
    return bool(updated)


def grant_reapprove(*, grant: ToolGrant, actor: Actor) -> ToolGrant:
    """A manager reviewed the new definition: pin it and lift the suspension."""
    grant_pin(grant=grant)
    with transaction.atomic():
        grant.save(update_fields=["pinned_definition", "suspended_at", "suspended_reason"])
        audit_log(
            action="tool.grant_reapproved",
            actor=actor,
            subject=grant.employee,
            data={"tool": grant.tool_name},
        )
    return grant


def definition_diff(pinned: dict, live: dict | None) -> list[str]:
    """What changed between two definitions, one line per field, for a person to review."""
    if live is None:
        return ["the tool is gone"]
    lines = []
    for field in ("description", "input_schema", "annotations"):
        before, after = pinned.get(field), live.get(field)
        if before != after:
            lines.append(
                f"{field}: {json.dumps(before, sort_keys=True)[:400]} → "
                f"{json.dumps(after, sort_keys=True)[:400]}"
            )
    return lines
