"""Model Context Protocol: tool servers as sources of tools."""
