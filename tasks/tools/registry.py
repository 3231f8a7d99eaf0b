"""Registry of tool declarations, with JSON-schema validation of grant scopes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from django.db import models


class Risk(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class UnknownToolError(LookupError):
    pass


class ToolScopeError(ValueError):
    pass


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    default_risk: str
    scope_schema: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "maxProperties": 0}
    )
    side_effects: bool = True
    execute: Callable[..., Any] | None = None


_REGISTRY: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    if tool.name in _REGISTRY:
        raise ValueError(f"tool {tool.name!r} is registered twice")
    jsonschema.Draft202012Validator.check_schema(tool.parameters)
    jsonschema.Draft202012Validator.check_schema(tool.scope_schema)
    _REGISTRY[tool.name] = tool
    return tool


def get_tool(name: str) -> Tool:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownToolError(f"There is no tool called {name!r}. Known tools: {known}.") from None


def all_tools() -> list[Tool]:
    return sorted(_REGISTRY.values(), key=lambda tool: tool.name)


def validate_scope(tool_name: str, scope: Any) -> None:
    """Raise ToolScopeError with a readable message when a scope does not fit the tool."""
    tool = get_tool(tool_name)
    validator = jsonschema.Draft202012Validator(tool.scope_schema)
    errors = sorted(validator.iter_errors(scope), key=lambda error: list(error.path))
    if errors:
        error = errors[0]
        where = "/".join(str(part) for part in error.path)
        location = f" at '{where}'" if where else ""
        raise ToolScopeError(f"Scope for {tool_name}{location}: {error.message}")
