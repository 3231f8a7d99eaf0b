"""Matching a tool call against the scope of its grant."""

from __future__ import annotations

from urllib.parse import urlsplit


def domain_allowed(domain: str, allowed: list[str]) -> bool:
    """'example.com' allows exactly that domain; '*.example.com' allows its subdomains."""
    domain = domain.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if domain.endswith(pattern[1:]):
                return True
        elif domain == pattern:
            return True
    return False


def host_allowed(netloc: str, allowed: list[str]) -> bool:
    """A pattern with a port allows only that port; without one, any port of that host."""
    host, _, port = netloc.lower().rpartition(":") if ":" in netloc else (netloc.lower(), "", "")
    for pattern in allowed:
        p_host, _, p_port = pattern.rpartition(":") if ":" in pattern else (pattern, "", "")
        if p_port and p_port != port:
            continue
        if domain_allowed(host, [p_host]):
            return True
    return False


def split_url(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a URL, without credentials."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return parts.scheme.lower(), netloc
