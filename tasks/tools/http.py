"""http_request: only to allowed hosts and methods, with a timeout, a size cap and no redirects."""

from __future__ import annotations

import urllib.error
import urllib.request

from django.conf import settings

from tasks.tools.registry import ToolContext
from tasks.tools.scopes import host_allowed, split_url


def check_scope(arguments: dict, scope: dict) -> str | None:
    scheme, netloc = split_url(arguments["url"])
    if scheme not in ("http", "https"):
        return f"Only http and https URLs are allowed, not '{scheme or 'none'}'."
    if not host_allowed(netloc, scope.get("allowed_hosts", [])):
        return f"Host '{netloc}' is not among the allowed hosts ({', '.join(scope.get('allowed_hosts', []))})."
    methods = scope.get("allowed_methods", ["GET"])
    if arguments["method"] not in methods:
        return f"Method {arguments['method']} is not allowed (allowed: {', '.join(methods)})."
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
    body = arguments.get("body")
    request = urllib.request.Request(  # noqa: S310 - scheme checked in check_scope
        arguments["url"],
        data=body.encode() if body is not None else None,
        method=arguments["method"],
        headers={"User-Agent": "AIWorkforce/1.0", **arguments.get("headers", {})},
    )
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        response = exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return {"error": f"request failed: {reason}"}
    with response:
        data = response.read(cap + 1)
        status = response.status if hasattr(response, "status") else response.code
        content_type = response.headers.get("Content-Type", "")
        location = response.headers.get("Location")
    result = {
        "status": status,
        "content_type": content_type,
        "body": data[:cap].decode("utf-8", errors="replace"),
        "truncated": len(data) > cap,
        "summary": f"{arguments['method']} {arguments['url']} -> {status}",
    }
    if location:
        result["redirect_not_followed"] = location
    return result
