"""http_request: only to allowed hosts and methods, with a deadline, a size cap and no redirects.

Guards against reaching what the grant did not mean to allow: URLs with credentials,
backslashes or whitespace are refused; a user-supplied Host header is dropped; and a host
that resolves to a private, loopback or link-local address is refused unless the grant names
that host literally (a wildcard never reaches an internal address).
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings

from tasks.tools.registry import ToolContext
from tasks.tools.scopes import host_allowed, split_url

_FORBIDDEN_URL_CHARACTERS = set("\\ \t\r\n")


def check_scope(arguments: dict, scope: dict) -> str | None:
    url = arguments["url"]
    if any(character in _FORBIDDEN_URL_CHARACTERS for character in url):
        return "The URL must not contain spaces or backslashes."
    parts = urlsplit(url)
    if parts.username or parts.password or "@" in parts.netloc:
        return "URLs with credentials (user@host) are not allowed."
    try:
        scheme, netloc = split_url(url)
    except ValueError:
        return f"'{parts.netloc}' is not a valid host and port."
    if scheme not in ("http", "https"):
        return f"Only http and https URLs are allowed, not '{scheme or 'none'}'."
    allowed = scope.get("allowed_hosts", [])
    if not host_allowed(netloc, allowed):
        return f"Host '{netloc}' is not among the allowed hosts ({', '.join(allowed)})."
    methods = scope.get("allowed_methods", ["GET"])
    if arguments["method"] not in methods:
        return f"Method {arguments['method']} is not allowed (allowed: {', '.join(methods)})."
    return None


def _internal_address_refusal(host: str, allowed: list[str]) -> str | None:
    """Refuse internal addresses unless the grant names this very host (no wildcard)."""
    named_literally = any(pattern.split(":")[0] == host for pattern in allowed)
    if named_literally:
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"request failed: cannot resolve {host} ({exc})"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            return (
                f"Not allowed: {host} resolves to the internal address {ip}; name the host "
                "itself (not a wildcard) in the grant to allow it."
            )
    return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead outside the allowed hosts; report it instead of following it.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def execute(context: ToolContext, arguments: dict) -> dict:
    timeout = float(context.scope.get("timeout_seconds", 10))
    cap = min(
        int(context.scope.get("max_response_bytes", settings.HTTP_TOOL_MAX_BYTES)),
        settings.HTTP_TOOL_MAX_BYTES,
    )
    host = urlsplit(arguments["url"]).hostname or ""
    refusal = _internal_address_refusal(host, context.scope.get("allowed_hosts", []))
    if refusal:
        return {"error": refusal}
    headers = {
        name: value
        for name, value in arguments.get("headers", {}).items()
        if name.lower() != "host"
    }
    body = arguments.get("body")
    request = urllib.request.Request(  # noqa: S310 - scheme checked in check_scope
        arguments["url"],
        data=body.encode() if body is not None else None,
        method=arguments["method"],
        headers={**headers, "User-Agent": "AIWorkforce/1.0"},
    )
    deadline = time.monotonic() + timeout
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        response = exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return {"error": f"request failed: {getattr(exc, 'reason', exc)}"}
    with response:
        status = response.status if hasattr(response, "status") else response.code
        content_type = response.headers.get("Content-Type", "")
        location = response.headers.get("Location")
        chunks, size = [], 0
        try:
            # A whole-response deadline: a server trickling bytes cannot hold the worker.
            while size <= cap and time.monotonic() < deadline:
                chunk = response.read(min(65536, cap + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except (TimeoutError, OSError) as exc:
            return {"error": f"request failed while reading the response: {exc}"}
        timed_out = time.monotonic() >= deadline and size <= cap
    data = b"".join(chunks)
    result = {
        "status": status,
        "content_type": content_type,
        "body": data[:cap].decode("utf-8", errors="replace"),
        "truncated": len(data) > cap or timed_out,
        "summary": f"{arguments['method']} {arguments['url']} -> {status}",
    }
    if location:
        result["redirect_not_followed"] = location
    return result
