"""`/mcp/`: the workforce over MCP's streamable HTTP, served by a Django view.

The site runs under WSGI, so the view bridges one Django request to the SDK's own ASGI handler
(`StreamableHTTPSessionManager`, stateless and answering in JSON, no SSE): every POST is a
complete JSON-RPC exchange, needs no session kept between requests, and works behind any WSGI
server. The view first authenticates the personal API token (a session cookie never counts:
a browser that is signed in cannot be made to call this), then refuses what must not reach the
SDK (too big, not UTF-8, a NUL, JSON PostgreSQL cannot store) with a 4xx, then runs the SDK's
handler with `async_to_sync`, whose event loop sends each tool's database work back to this
request's thread (see tools.py). One `MCPServer` serves the process; the person of each request
travels in a context variable, which the tasks the SDK starts for the request inherit. Only POST
carries messages: with no session there is no GET stream and nothing to DELETE, so both are
405, as the transport spec allows.
"""

from __future__ import annotations

import json
import logging
import threading
from contextvars import ContextVar
from functools import cache

import anyio
from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from aiworkforce.api_tokens import PREFIX_LENGTH, api_token_authenticate
from aiworkforce.mcp_server.tools import Identity, build_server
from aiworkforce.mcp_server.workforce import Via
from aiworkforce.storable import json_loads_bounded, storable_problem

MAX_REQUEST_BYTES = 1_048_576
# A session manager starts and stops for every request here; its INFO lines would be noise.
for _name in ("mcp.server.streamable_http_manager", "mcp.server.streamable_http"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# JSON-RPC codes: the spec's, and -32001 for "not authenticated" (server-defined range).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
UNAUTHENTICATED = -32001
_identity: ContextVar[Identity] = ContextVar("mcp_identity")
# streamable_http_app() makes a new session manager and keeps it on the server for us to take:
# one request at a time, or two threads could take the same one.
_manager_lock = threading.Lock()
# Headers the SDK never needs; left out so no secret can reach it (or a log line of it).
_WITHHELD_HEADERS = {"authorization", "cookie", "content-length"}


def _error(status: int, code: int, message: str) -> HttpResponse:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def _unauthenticated(message: str) -> HttpResponse:
    response = _error(401, UNAUTHENTICATED, message)
    response["WWW-Authenticate"] = 'Bearer realm="ai-workforce", error="invalid_token"'
    return response


def _bearer(request: HttpRequest) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return 0  # the body read is capped anyway


def _body_problem(body: bytes) -> HttpResponse | None:
    """A 400 for a body the SDK must not see: not UTF-8, a NUL, or JSON that cannot be stored."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _error(
            400, PARSE_ERROR, f"The body must be UTF-8 JSON: byte {exc.start} is not UTF-8."
        )
    if "\x00" in text:
        return _error(400, PARSE_ERROR, "The body contains a NUL character (U+0000).")
    try:
        message = json_loads_bounded(text)
    except ValueError as exc:
        return _error(400, PARSE_ERROR, f"The body is not JSON: {exc}")
    if problem := storable_problem(message):
        return _error(400, INVALID_REQUEST, f"The request contains {problem}, which we refuse.")
    return None


@csrf_exempt  # authenticated by a bearer token, never by a cookie: there is no CSRF to guard
@login_not_required
def mcp_endpoint(request: HttpRequest) -> HttpResponse:
    """MCP over streamable HTTP, as the person whose personal API token comes with the request."""
    plaintext = _bearer(request)
    if not plaintext:
        return _unauthenticated(
            "Send a personal API token as 'Authorization: Bearer aiw_...'; make one on your "
            "Security page. A signed-in browser session does not count here."
        )
    user = api_token_authenticate(plaintext)
    if user is None:
        return _unauthenticated(
            "This API token is not valid: it was revoked, its owner deactivated, or it never existed."
        )
    if request.method != "POST":
        response = _error(
            405,
            INVALID_REQUEST,
            "Send each JSON-RPC message as a POST; this server keeps no sessions, so it offers "
            "no GET stream.",
        )
        response["Allow"] = "POST"
        return response
    if _declared_length(request) > MAX_REQUEST_BYTES:
        return _error(413, INVALID_REQUEST, f"The body is over {MAX_REQUEST_BYTES} bytes.")
    body = request.read(MAX_REQUEST_BYTES + 1)
    if len(body) > MAX_REQUEST_BYTES:
        return _error(413, INVALID_REQUEST, f"The body is over {MAX_REQUEST_BYTES} bytes.")
    if problem := _body_problem(body):
        return problem
    via = Via(
        transport="http",
        token_prefix=plaintext[:PREFIX_LENGTH],
        client_address=request.META.get("REMOTE_ADDR", ""),
    )
    identity = Identity(user=lambda: user, via=via)
    status, headers, content = async_to_sync(_serve)(identity, _scope(request, body), body)
    response = HttpResponse(content, status=status, content_type=headers.pop("content-type", None))
    for name, value in headers.items():
        response[name] = value
    return response


def _scope(request: HttpRequest, body: bytes) -> dict:
    """The ASGI scope of this request, as the SDK's handler reads it."""
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1", "replace"))
        for name, value in request.headers.items()
        if name.lower() not in _WITHHELD_HEADERS
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode("utf-8"),
        "query_string": request.META.get("QUERY_STRING", "").encode("latin-1", "replace"),
        "root_path": "",
        "headers": headers,
        "client": (request.META.get("REMOTE_ADDR", ""), 0),
        "server": (request.META.get("SERVER_NAME", ""), _port(request.META.get("SERVER_PORT"))),
    }


def _port(value) -> int:
    return int(value) if str(value).isdigit() else 0


@cache
def _server() -> MCPServer:
    return build_server(_identity.get)


def _session_manager():
    """A fresh stateless, JSON-answering session manager (each runs only once, by design)."""
    server = _server()
    with _manager_lock:
        # Host and Origin are Django's business here (ALLOWED_HOSTS); the token is not a
        # cookie, so a foreign page cannot borrow it (the SDK's DNS-rebinding guard is for
        # local servers that have no authentication at all).
        server.streamable_http_app(
            json_response=True,
            stateless_http=True,
            max_request_body_size=MAX_REQUEST_BYTES,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        return server.session_manager


async def _serve(identity: Identity, scope: dict, body: bytes) -> tuple[int, dict, bytes]:
    """Run the SDK's handler for one request as `identity`; collect its answer."""
    manager = _session_manager()
    answered = anyio.Event()
    delivered = False
    status = 500
    headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                name = name.decode("latin-1").lower()
                if name != "content-length":  # Django counts the body itself
                    headers[name] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                answered.set()

    # Set in this coroutine's context, which the tasks the SDK starts for the request inherit;
    # reset after, as asgiref copies the context back to the request's thread.
    reset = _identity.set(identity)
    try:
        async with manager.run():
            await manager.handle_request(scope, receive, send)
    finally:
        _identity.reset(reset)
    return status, headers, b"".join(chunks)
