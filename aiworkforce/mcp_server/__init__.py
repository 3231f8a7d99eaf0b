"""The workforce as an MCP server: people assign, follow and decide from their own MCP clients.

`tools.build_server` makes the SDK server acting as one person; `http.mcp_endpoint` serves it at
/mcp/ (personal API tokens), `manage.py mcp_serve` over stdio.
"""
