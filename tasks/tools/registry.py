"""Registry of tool declarations, with JSON-schema validation of arguments and grant scopes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jsonschema
from django.db import models

from aiworkforce.schema_messages import first_error, located_problem


class Risk(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class UnknownToolError(LookupError):
    pass


class ToolScopeError(ValueError):
    pass


@dataclass(frozen=True)
class ToolContext:
    """What a tool's execute function may use: never the model's say-so about who it is."""

    task: Any
    employee: Any
    call_id: str
    scope: dict[str, Any]
    # The grant the call is made under (an MCP tool compares its pinned definition).
    grant: Any = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    default_risk: str
    scope_schema: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "maxProperties": 0}
    )
    # Side-effecting tools are only proposed in shadow mode.
    side_effects: bool = True
    # Transactional tools write only to the database, in the same transaction as their step,
    # so they can never run twice. Others (HTTP) record an intent first and are never retried.
    transactional: bool = True
    # Whether execute writes to the database (then it runs in one transaction with its step).
    writes_database: bool = True
    # Tools the loop itself carries out because they park the task (escalate_to_human).
    parks_task: bool = False
    # Tools the loop carries out by creating a linked task for another employee and waiting
    # for it (delegate): the call's result is that task's outcome.
    delegates: bool = False
    # (arguments, scope) -> a refusal message, or None when the call is inside the grant.
    check_scope: Callable[[dict, dict], str | None] | None = None
    # (context, arguments) -> a JSON-serialisable result.
    execute: Callable[[ToolContext, dict], dict] | None = None
    # The name the model calls it by, when `name` is not one a model API accepts
    # (^[a-zA-Z0-9_-]{1,64}$, e.g. "mcp:orders/lookup_order" → "mcp__orders__lookup_order").
    model_name: str = ""

    def schema_for_model(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.model_name or self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


_REGISTRY: dict[str, Tool] = {}
# Tools declared elsewhere (an MCP server's), by name prefix: (resolve one by name, list all).
_SOURCES: dict[str, tuple[Callable[[str], Tool | None], Callable[[], list[Tool]]]] = {}


def register(tool: Tool) -> Tool:
    if tool.name in _REGISTRY:
        raise ValueError(f"tool {tool.name!r} is registered twice")
    jsonschema.Draft202012Validator.check_schema(tool.parameters)
    jsonschema.Draft202012Validator.check_schema(tool.scope_schema)
    _REGISTRY[tool.name] = tool
    return tool


def register_source(
    prefix: str, resolve: Callable[[str], Tool | None], listing: Callable[[], list[Tool]]
) -> None:
    """Tools whose names start with `prefix` are looked up by `resolve` (None: no such tool)."""
    _SOURCES[prefix] = (resolve, listing)


def get_tool(name: str) -> Tool:
    tool = _REGISTRY.get(name)
    if tool is not None:
        return tool
    for prefix, (resolve, _listing) in _SOURCES.items():
        if name.startswith(prefix) and (tool := resolve(name)) is not None:
            return tool
    known = ", ".join(sorted(_REGISTRY))
    hint = "".join(f", or {prefix}… tools of a registered server" for prefix in _SOURCES)
    raise UnknownToolError(f"There is no tool called {name!r}. Known tools: {known}{hint}.")


def all_tools() -> list[Tool]:
    """Every tool that could be granted: the built-in ones and those of every source."""
    tools = list(_REGISTRY.values())
    for _resolve, listing in _SOURCES.values():
        tools.extend(listing())
    return sorted(tools, key=lambda tool: tool.name)


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        json.loads(schema_json), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _first_error(schema: dict, instance: Any) -> str | None:
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(instance), key=lambda error: list(error.path))
    if not errors:
        return None
    error = errors[0]
    where = "/".join(str(part) for part in error.path)
    return f"at '{where}': {error.message}" if where else error.message


def validate_arguments(tool: Tool, arguments: Any) -> str | None:
    """A readable description of what is wrong with a call's arguments, or None."""
    return _first_error(tool.parameters, arguments)


def validate_scope(tool_name: str, scope: Any) -> None:
    """Raise ToolScopeError with a readable message when a scope does not fit the tool."""
    tool = get_tool(tool_name)
    error = first_error(_validator(json.dumps(tool.scope_schema, sort_keys=True)), scope)
    if error is not None:
        # In words and with its place: "Scope for send_email: scope.allowed_domains: ..."
        raise ToolScopeError(f"Scope for {tool_name}: {located_problem(error, root='scope')}.")
