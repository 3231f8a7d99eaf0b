"""The tool registry: what an AI employee can be granted.

Each tool declares its name, description, argument schema, default risk and the schema of a
grant's scope. This package's top level is a leaf (it imports no models): the built-in tool
families, which do, are imported and so registered in TasksConfig.ready().
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
    register_source,
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
    "register_source",
    "validate_arguments",
    "validate_scope",
]
