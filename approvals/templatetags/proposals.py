"""Showing a proposed action's arguments to the person who decides on it."""

from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def argument_pairs(arguments) -> list[tuple[str, str]]:
    """(name, value as text) for each argument: text as it is, anything else as JSON."""
    if not isinstance(arguments, dict):
        return [("arguments", json.dumps(arguments, ensure_ascii=False))]
    return [
        (key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for key, value in arguments.items()
    ]


@register.filter
def mcp_tool_label(tool_name: str) -> str:
    """ "refund_order on the MCP server orders" for "mcp:orders/refund_order"."""
    server, _, tool = tool_name.removeprefix("mcp:").partition("/")
    return f"{tool} on the MCP server {server}"
