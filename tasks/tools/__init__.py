"""The tool registry: what an AI employee can be granted.

Each tool declares its name, description, argument schema, default risk and the schema of a
grant's scope. Tools are registered by their modules at import time.
"""

from tasks.tools.registry import (
    Risk,
    Tool,
    ToolContext,
    ToolScopeError,
    UnknownToolError,
    all_tools,
    get_tool,
    register,
    validate_arguments,
    validate_scope,
)

__all__ = [
    "Risk",
    "Tool",
    "ToolContext",
    "ToolScopeError",
    "UnknownToolError",
    "all_tools",
    "get_tool",
    "register",
    "validate_arguments",
    "validate_scope",
]

# Built-in tool families register themselves on import.
from tasks.tools import builtin, delegate  # noqa: F401
