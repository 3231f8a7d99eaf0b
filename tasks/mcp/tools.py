"""MCP tools in the tool registry: "mcp:SERVER/TOOL" is a tool like the built-in ones.

A tool is known by the definition its server gave when last listed (McpTool). Granted, it is
pinned (tasks.mcp.services.grant_pin); before every call the server's current definition is
compared with the pin, and a changed tool is suspended instead of called. A read-only tool runs
like a lookup; any other records its intent first, so a call whose outcome is unknown (worker
killed, timeout) is never repeated. What a tool returns is data for the model, never an
instruction to the loop: only grants and approvals decide what runs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from functools import partial

from django.conf import settings

from aiworkforce.audit import Actor
from tasks.mcp import client
from tasks.mcp.services import (
    PREFIX,
    grant_suspend,
    mcp_tool_definition,
    server_spec,
    split_tool_name,
)
from tasks.models import McpCredential, McpServer, McpTool
from tasks.tools import Risk, Tool, ToolContext, register_source

logger = logging.getLogger(__name__)

_MODEL_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
# Each worker process lists a server's tools at most this often to compare them with the pins,
# per way of reaching it: a server may describe its tools differently to another credential.
_live: dict[client.ServerSpec, tuple[float, dict[str, dict]]] = {}
_live_lock = threading.Lock()
# Tools and servers as last read from the database (dict writes are atomic; a race re-reads).
_resolved: dict[str, tuple[float, Tool | None]] = {}
_servers: dict[tuple[str, int], tuple[float, tuple[McpServer, client.ServerSpec] | None]] = {}


def model_name(tool_name: str) -> str:
    """A name the model APIs accept (^[a-zA-Z0-9_-]{1,64}$) for "mcp:SERVER/TOOL"."""
    server, tool = split_tool_name(tool_name)
    alias = _MODEL_NAME_UNSAFE.sub("_", f"mcp__{server}__{tool}")
    # Server names hold no "__", so "mcp__SERVER__" is unambiguous; a tool name that had to be
    # changed or cut gets a hash of its own, so that two tools never share an alias.
    if alias != f"mcp__{server}__{tool}" or len(alias) > 64:
        alias = f"{alias[:55]}_{hashlib.sha256(tool_name.encode()).hexdigest()[:8]}"
    return alias


def tool_from_definition(tool_name: str, definition: dict) -> Tool:
    annotations = definition.get("annotations") or {}
    read_only = annotations.get("readOnlyHint") is True
    destructive = annotations.get("destructiveHint", True) is not False
    return Tool(
        name=tool_name,
        description=definition.get("description") or definition.get("name", ""),
        parameters=definition.get("input_schema") or {"type": "object"},
        default_risk=Risk.LOW if read_only else Risk.HIGH if destructive else Risk.MEDIUM,
        side_effects=not read_only,
        # Read-only: run as a lookup. Anything else: intent first, never repeated blindly.
        transactional=read_only,
        writes_database=False,
        execute=partial(_call, tool_name),
        model_name=model_name(tool_name),
    )


def _resolve(tool_name: str) -> Tool | None:
    # Asked several times a turn: kept for MCP_TOOLS_CACHE_SECONDS (a call still compares the
    # server's live definition with the grant's pin, so a stale entry cannot run a changed tool).
    now = time.monotonic()
    cached = _resolved.get(tool_name)
    if cached and now - cached[0] < settings.MCP_TOOLS_CACHE_SECONDS:
        return cached[1]
    definition = mcp_tool_definition(tool_name)
    tool = tool_from_definition(tool_name, definition) if definition is not None else None
    _resolved[tool_name] = (now, tool)
    return tool


def _listing() -> list[Tool]:
    return [
        tool_from_definition(f"{PREFIX}{row.server.name}/{row.name}", row.definition)
        for row in McpTool.objects.select_related("server")
    ]


def _live_definitions(server: McpServer, spec: client.ServerSpec) -> dict[str, dict]:
    """The server's tools as it serves them now (listed at most every MCP_TOOLS_CACHE_SECONDS)."""
    now = time.monotonic()
    with _live_lock:
        cached = _live.get(spec)
    if cached and now - cached[0] < settings.MCP_TOOLS_CACHE_SECONDS:
        return cached[1]
    definitions = client.list_tools(spec, timeout=settings.MCP_TIMEOUT_SECONDS)
    live = {definition.name: definition.as_json() for definition in definitions}
    with _live_lock:
        _live[spec] = (now, live)
    return live


def forget_live_definitions() -> None:
    """Forget what this process read of servers and tools (tests; a server changed)."""
    with _live_lock:
        _live.clear()
    _resolved.clear()
    _servers.clear()


def _server(name: str, employee_id: int) -> tuple[McpServer, client.ServerSpec] | None:
    """The server and how this employee reaches it (its own credential over the shared
    secrets, decrypted), kept for MCP_TOOLS_CACHE_SECONDS."""
    now = time.monotonic()
    cached = _servers.get((name, employee_id))
    if cached and now - cached[0] < settings.MCP_TOOLS_CACHE_SECONDS:
        return cached[1]
    server = McpServer.objects.filter(name=name).first()
    found = None
    if server is not None:
        credential = McpCredential.objects.filter(server=server, employee_id=employee_id).first()
        found = (server, server_spec(server, credential))
    _servers[(name, employee_id)] = (now, found)
    return found


def _call(tool_name: str, context: ToolContext, arguments: dict) -> dict:
    server_name, tool = split_tool_name(tool_name)
    try:
        found = _server(server_name, context.task.employee_id)
        if found is None:
            return {"error": f"The MCP server '{server_name}' is no longer registered."}
        server, spec = found
        grant = context.grant
        live = _live_definitions(server, spec).get(tool)
        if grant is None or live != grant.pinned_definition:
            if grant is not None:
                grant_suspend(grant=grant, live=live, actor=Actor.system("rug-pull guard"))
            return {
                "error": f"{tool_name} was not called: its server now describes it differently "
                "than when it was granted (or no longer offers it), so the grant is suspended "
                "until a manager reviews the change."
            }
        result = client.call_tool(
            spec,
            tool,
            arguments,
            timeout=settings.MCP_TIMEOUT_SECONDS,
            max_bytes=settings.MCP_RESULT_MAX_BYTES,
        )
    except client.McpTimeout as exc:
        return {"error": f"{exc}. Its outcome is unknown, so it was not repeated."}
    except client.McpError as exc:
        return {"error": str(exc)}
    if result.is_error:
        return {"error": f"The tool reported an error: {result.text}"}
    outcome: dict = {"content": result.text}
    if result.structured is not None:
        outcome["structured"] = result.structured
    if result.truncated:
        outcome["truncated"] = True
    return outcome


register_source(PREFIX, _resolve, _listing)
