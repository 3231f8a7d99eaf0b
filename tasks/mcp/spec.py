"""How to reach an MCP server, and the errors a person can act on; no SDK, no Django models.

Secrets (env values of a stdio server, header values of an HTTP one) never appear in a repr or
an error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

TRANSPORTS = ("stdio", "http")


@dataclass(frozen=True, repr=False)
class ServerSpec:
    """How to reach one MCP server. `env` and `headers` hold secrets: only their names are shown."""

    name: str
    transport: str  # "stdio" or "http"
    command: str = ""  # stdio: the executable
    args: tuple[str, ...] = ()  # stdio
    env: tuple[tuple[str, str], ...] = ()  # stdio: extra environment, merged over the SDK's default
    url: str = ""  # http: the streamable-HTTP endpoint
    headers: tuple[tuple[str, str], ...] = ()  # http: e.g. ("Authorization", "Bearer …")

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"MCP server {self.name!r}: transport must be one of {TRANSPORTS}")
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"MCP server {self.name!r}: a stdio server needs a command")
        if self.transport == "http" and not self.url:
            raise ValueError(f"MCP server {self.name!r}: an http server needs a url")

    def __repr__(self) -> str:
        if self.transport == "stdio":
            where = f"command={self.command!r}, args={self.args!r}, env=[{_names(self.env)}]"
        else:
            where = f"url={display_url(self.url)!r}, headers=[{_names(self.headers)}]"
        return f"ServerSpec(name={self.name!r}, transport={self.transport!r}, {where})"

    def secret_values(self) -> list[str]:
        """The values no message may show: env and header values, and a header's bare token."""
        values = [value for _, value in (*self.env, *self.headers)]
        values += [value.split(None, 1)[1] for _, value in self.headers if " " in value.strip()]
        return sorted({value for value in values if len(value) >= 4}, key=len, reverse=True)


def _names(pairs: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{name}=***" for name, _ in pairs)


def display_url(url: str) -> str:
    """The URL without credentials or a query string, either of which may carry a secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class McpError(Exception):
    """A failure a person can act on, naming the server; it never carries a secret."""


class McpTimeout(McpError):
    """The server did not answer (or finish connecting) within the timeout."""


class McpUnavailable(McpError):
    """The server cannot be reached or started, refused the credentials, died, or broke protocol."""


def mcp_error(cls: type[McpError], spec: ServerSpec, message: str) -> McpError:
    """An error of `cls` naming the server, with every secret of the spec masked."""
    for secret in spec.secret_values():
        message = message.replace(secret, "***")
    return cls(f"MCP server {spec.name!r} {message}")
