"""MCP servers shipped with the demo, each run as its own script over stdio (kept in a
directory of their own, where no module shadows one of the standard library)."""
