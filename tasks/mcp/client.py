"""A synchronous client for MCP tool servers, over the official async SDK.

The agent loop runs on worker threads and cannot await, so every request goes through one
event-loop thread per process (an anyio blocking portal, started on first use). Each `ServerSpec`
has one session per process, held open by one long-lived task on that loop (the SDK's context
managers must be entered and left by one task): a stdio server is started once and serves every
call, concurrent ones included. A session that fails (the server died, a call timed out) is
discarded and closed in the background, and the next call reconnects; one idle for IDLE_TIMEOUT
is closed. Every wait is bounded by the caller's timeout, connecting included.

A child forked by django-q2 starts its own loop thread and sessions and never touches the
parent's. Secrets (env values of a stdio server, header values of an HTTP one) never appear in a
repr, a log line or an exception message. This module imports no Django models.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx2
import mcp_types
from anyio.from_thread import start_blocking_portal
from mcp import ClientSession, StdioServerParameters
from mcp.client.extension import UnexpectedClaimedResult
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from tasks.mcp.results import CallResult, call_result

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSPORTS = ("stdio", "http")
ANNOTATION_HINTS = ("title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
CLIENT_INFO = mcp_types.Implementation(name="ai-workforce", version="1")
MAX_PAGES = 100  # of a tool listing; a server that pages on and on is broken
CLOSE_TIMEOUT = 10.0  # close_sessions(); the SDK bounds a stdio shutdown at about 6 s
LOOP_GRACE = 5.0  # what a caller waits beyond its timeout should the loop thread itself be stuck
SESSION_FATAL_STATUSES = (401, 403, 404)  # after these an HTTP session is of no further use
IDLE_TIMEOUT = 600.0  # a session unused this long is closed (its spec may never come back)


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


@dataclass(frozen=True)
class ToolDefinition:
    """A tool as the server described it."""

    name: str
    description: str
    input_schema: dict
    annotations: dict  # only the hints the server set, by their spec names (ANNOTATION_HINTS)

    def as_json(self) -> dict:
        """The definition as plain JSON data (a deep copy), to pin it and diff it later."""
        return json.loads(json.dumps(asdict(self)))


class McpError(Exception):
    """A failure a person can act on, naming the server; it never carries a secret."""


class McpTimeout(McpError):
    """The server did not answer (or finish connecting) within the timeout."""


class McpUnavailable(McpError):
    """The server cannot be reached or started, refused the credentials, died, or broke protocol."""


def _error(cls: type[McpError], spec: ServerSpec, message: str) -> McpError:
    for secret in spec.secret_values():
        message = message.replace(secret, "***")
    return cls(f"MCP server {spec.name!r} {message}")


# --- the public, synchronous interface --------------------------------------------------------


def list_tools(spec: ServerSpec, *, timeout: float) -> list[ToolDefinition]:
    """Every tool the server offers, following pagination cursors."""
    tools = _current_pool().request(spec, timeout, "the tool listing", _list_all_tools, resend=True)
    return [_definition(tool) for tool in tools]


def call_tool(
    spec: ServerSpec, name: str, arguments: dict, *, timeout: float, max_bytes: int
) -> CallResult:
    """Call one tool. A tool that failed is a CallResult(is_error=True), not an exception."""
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")

    async def call(session: ClientSession) -> mcp_types.CallToolResult:
        return await session.call_tool(name, arguments)

    result = _current_pool().request(spec, timeout, f"the call to {name!r}", call)
    return call_result(result, max_bytes)


def close_sessions() -> None:
    """Close every session of this process and stop its loop thread (tests, shutdown).

    In a forked child the parent's sessions are left alone: they are the parent's to close.
    """
    global _pool
    with _lock:
        pool, _pool = _pool, None
        if pool is not None and pool.pid != os.getpid():
            _abandoned.append(pool)
            return
    if pool is not None:
        pool.stop()


# --- one event-loop thread per process --------------------------------------------------------


class _Pool:
    """This process's event-loop thread and its sessions (the dict is touched only on the loop)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._portal_cm = start_blocking_portal(name="mcp-client")
        self.portal = self._portal_cm.__enter__()
        _, self._task_group = self.portal.start_task(_hold_task_group)
        self.loop = self.portal.call(asyncio.get_running_loop)
        self.connections: dict[ServerSpec, _Connection] = {}

    def request(
        self,
        spec: ServerSpec,
        timeout: float,
        what: str,
        fn: Callable[[ClientSession], Awaitable[T]],
        *,
        resend: bool = False,
    ) -> T:
        """Run `fn` on the spec's session, from any thread; within timeout (plus LOOP_GRACE).
        With `resend` (a listing), a request whose session the server forgot is sent again."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")

        async def on_loop() -> T:
            deadline = anyio.current_time() + timeout
            try:
                return await self._connection(spec, timeout).request(what, timeout, fn)
            except _SessionExpired as exc:
                # A new session, and only a listing is resent: the 404 may be another request's
                # on this connection, so a call's outcome is unknown and it is never sent twice.
                remaining = deadline - anyio.current_time()
                if not resend or remaining <= 0:
                    why = f"forgot its session during {what} (HTTP 404); not sent again, so its"
                    raise _error(McpUnavailable, spec, f"{why} outcome is unknown") from exc
                return await self._connection(spec, remaining).request(what, remaining, fn)

        # One hop: the portal's start_task_soon waits a round trip for the loop to spawn it.
        future = asyncio.run_coroutine_threadsafe(on_loop(), self.loop)
        try:
            return future.result(timeout + LOOP_GRACE)
        except concurrent.futures.CancelledError:
            raise _error(McpUnavailable, spec, f"was closed during {what}") from None
        except TimeoutError:
            if future.done():
                raise
            future.cancel()
            raise _error(
                McpTimeout, spec, f"did not answer {what} within {timeout:g} s (client loop stuck)"
            ) from None

    def _connection(self, spec: ServerSpec, timeout: float) -> _Connection:
        now = anyio.current_time()
        for other in list(self.connections.values()):
            if other.finished.is_set():
                del self.connections[other.spec]
            elif other.in_flight == 0 and now - other.last_used > IDLE_TIMEOUT:
                other.discard()
        connection = self.connections.get(spec)
        if connection is None or not connection.usable:
            connection = _Connection(spec, connect_timeout=timeout)
            self.connections[spec] = connection
            self._task_group.start_soon(connection.run, name=f"MCP session {spec.name!r}")
        return connection

    async def _close_all(self) -> None:
        connections = list(self.connections.values())
        self.connections.clear()
        for connection in connections:
            connection.discard()
        with anyio.move_on_after(CLOSE_TIMEOUT):
            for connection in connections:
                await connection.finished.wait()
        self._task_group.cancel_scope.cancel()

    def stop(self) -> None:
        try:
            self.portal.call(self._close_all)
            self.portal.call(self.portal.stop, True)
        except RuntimeError:  # the portal had already stopped
            pass
        self._portal_cm.__exit__(None, None, None)


async def _hold_task_group(*, task_status: anyio.abc.TaskStatus) -> None:
    """Keep a task group open on the loop for the sessions' long-lived tasks."""
    async with anyio.create_task_group() as task_group:
        task_status.started(task_group)
        await anyio.sleep_forever()


_lock = threading.Lock()
_pool: _Pool | None = None
# A parent's pools, kept referenced in a forked child so that no finalizer of theirs ever runs
# here: a subprocess transport's finalizer would kill the parent's server process.
_abandoned: list[_Pool] = []


def _current_pool() -> _Pool:
    global _pool
    with _lock:
        if _pool is not None and _pool.pid != os.getpid():
            _abandoned.append(_pool)
            _pool = None
        if _pool is None:
            _pool = _Pool()
        return _pool


def _forget_the_parent() -> None:
    """After fork, in the child: the parent's lock may be held by a thread that is gone."""
    global _lock, _pool
    _lock = threading.Lock()
    if _pool is not None:
        _abandoned.append(_pool)
        _pool = None


os.register_at_fork(after_in_child=_forget_the_parent)
atexit.register(close_sessions)


# --- one session ------------------------------------------------------------------------------


class _Connection:
    """One session with one server, held open by one task (`run`) on the client's loop."""

    def __init__(self, spec: ServerSpec, *, connect_timeout: float) -> None:
        self.spec = spec
        self.connect_timeout = connect_timeout  # the first caller's: it started the connection
        self.session: ClientSession | None = None
        self.error: McpError | None = None  # why it could not connect, or why it failed
        self.ready = anyio.Event()  # session or error is set
        self.finished = anyio.Event()  # run() has returned: the transport is closed
        self.wake = anyio.Event()  # run() should close: discarded, or the server went away
        self.closing = False
        self.in_flight = 0
        self.last_used = anyio.current_time()
        self.http_status: int | None = None  # a SESSION_FATAL_STATUSES answer to a POST
        self._scope = anyio.CancelScope()

    @property
    def usable(self) -> bool:
        return not self.closing and not self.finished.is_set()

    def discard(self, error: McpError | None = None) -> None:
        """No further calls here; close in the background (stdio: the process is stopped).
        `error` is what callers still waiting for the connection are told."""
        self.closing = True
        self.wake.set()
        if not self.ready.is_set():
            if error is not None and self.error is None:
                self.error = error
            self._scope.cancel()  # still connecting: nothing to close gracefully

    async def run(self) -> None:
        # A deadline on the task's own scope, not fail_after around the connect: the transport's
        # task groups are entered while connecting and left at the end (scopes nest strictly).
        self._scope.deadline = anyio.current_time() + self.connect_timeout
        try:
            with self._scope:
                await self._serve()
            if self._scope.cancelled_caught and self.error is None:
                self.error = self._explain(TimeoutError())  # the connect deadline passed
        except Exception as exc:
            if self.error is None:
                self.error = self._explain(exc)
            log = logger.warning if self.session is None else logger.info
            log("MCP server %r: session ended: %s", self.spec.name, self.error)
        finally:
            self.closing = True
            self.ready.set()
            self.finished.set()

    async def _serve(self) -> None:
        async with AsyncExitStack() as stack:
            read_stream, write_stream = await self._open_transport(stack)
            session = ClientSession(
                _WatchedStream(read_stream, self._server_went_away),
                write_stream,
                client_info=CLIENT_INFO,
            )
            await stack.enter_async_context(session)
            await session.initialize()
            self._scope.deadline = math.inf
            self.session = session
            self.ready.set()
            logger.info("MCP server %r: session started (%s)", self.spec.name, self.spec.transport)
            await self.wake.wait()

    def _server_went_away(self) -> None:
        self.closing = True
        self.wake.set()

    async def _open_transport(self, stack: AsyncExitStack) -> Any:
        spec = self.spec
        if spec.transport == "stdio":
            read_fd, write_fd = os.pipe()
            threading.Thread(
                target=_log_stderr, args=(spec.name, read_fd), daemon=True, name="mcp-stderr"
            ).start()
            # Our copy of the pipe's write end closes once the server has it as its stderr.
            with open(write_fd, "w") as errlog:
                parameters = StdioServerParameters(
                    command=spec.command, args=list(spec.args), env=dict(spec.env) or None
                )
                return await stack.enter_async_context(stdio_client(parameters, errlog=errlog))
        client = httpx2.AsyncClient(
            headers=dict(spec.headers),
            timeout=httpx2.Timeout(30.0, read=300.0),
            event_hooks={"response": [self._on_http_response]},
        )
        await stack.enter_async_context(client)
        return await stack.enter_async_context(streamable_http_client(spec.url, http_client=client))

    async def _on_http_response(self, response: httpx2.Response) -> None:
        # The SDK turns an HTTP error into a JSON-RPC error without its status; keep the status.
        if response.request.method == "POST" and response.status_code in SESSION_FATAL_STATUSES:
            self.http_status = response.status_code

    async def request(
        self, what: str, timeout: float, fn: Callable[[ClientSession], Awaitable[T]]
    ) -> T:
        """Wait for the session (connecting counts against the timeout), then run `fn` on it."""
        spec = self.spec
        self.in_flight += 1
        try:
            with anyio.fail_after(timeout):
                await self.ready.wait()
                if self.session is None:
                    raise _copy(self.error or _error(McpUnavailable, spec, "could not connect"))
                return await fn(self.session)
        except TimeoutError:
            phase = "connect" if self.session is None else "answer"
            error = _error(McpTimeout, spec, f"did not {phase} within {timeout:g} s ({what})")
            self.discard(error)
            raise error from None
        except MCPError as exc:
            if self.http_status is not None:
                self.discard()
                if self.http_status == 404 and self.session is not None:
                    raise _SessionExpired(str(self._explain(exc))) from None
                raise self._explain(exc) from None
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self.discard()
                with anyio.move_on_after(0.5):  # the transport may yet say why
                    await self.finished.wait()
                closed = _error(McpUnavailable, spec, f"closed the connection during {what}")
                raise _copy(self.error or closed) from None
            raise _error(
                McpError, spec, f"refused {what}: {exc.message} (code {exc.code})"
            ) from None
        except (ValidationError, RuntimeError, UnexpectedClaimedResult) as exc:
            raise _error(McpUnavailable, spec, f"answered {what} with invalid MCP: {exc}") from None
        finally:
            self.in_flight -= 1
            self.last_used = anyio.current_time()

    def _explain(self, exc: BaseException) -> McpError:
        """Why connecting (or the session) failed, for a person to act on."""
        spec, cause = self.spec, _root_cause(exc)
        if self.http_status in (401, 403):
            return _error(
                McpUnavailable, spec, f"refused the credentials (HTTP {self.http_status})"
            )
        if self.http_status == 404:
            state = "has no MCP endpoint" if self.session is None else "forgot the session"
            return _error(McpUnavailable, spec, f"{state} at {display_url(spec.url)} (HTTP 404)")
        if isinstance(cause, TimeoutError):
            return _error(McpTimeout, spec, f"did not connect within {self.connect_timeout:g} s")
        if spec.transport == "stdio" and isinstance(cause, OSError):
            return _error(McpUnavailable, spec, f"could not be started: {cause}")
        if isinstance(cause, httpx2.TransportError):
            reason = str(cause) or type(cause).__name__
            return _error(
                McpUnavailable, spec, f"could not be reached at {display_url(spec.url)}: {reason}"
            )
        if isinstance(cause, MCPError) and cause.code == mcp_types.CONNECTION_CLOSED:
            ended = "exited" if spec.transport == "stdio" else "closed the connection"
            return _error(McpUnavailable, spec, f"{ended} while connecting")
        if isinstance(cause, MCPError):
            return _error(McpUnavailable, spec, f"refused to start a session: {cause.message}")
        return _error(McpUnavailable, spec, f"failed: {type(cause).__name__}: {cause}")


class _SessionExpired(McpUnavailable):
    """The HTTP server forgot the session (404): it never ran the request, which may be retried."""


def _copy(error: McpError) -> McpError:
    """A fresh instance, so that callers sharing one failure do not share one traceback."""
    return type(error)(*error.args)


def _root_cause(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups, as task groups raise them."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = (inner or list(exc.exceptions))[0]
    return exc


class _WatchedStream:
    """The transport's read stream (which the SDK's dispatcher iterates), telling us when it ends:
    the server went away, and the next call should not wait to find out."""

    def __init__(self, stream: Any, on_end: Callable[[], None]) -> None:
        self._stream = stream
        self._on_end = on_end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def __aenter__(self) -> _WatchedStream:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._stream.__aexit__(*exc_info)

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError):
            self._on_end()
            raise


def _log_stderr(server: str, fd: int) -> None:
    """A stdio server's stderr goes to our log (DEBUG), never to our stdout; until EOF."""
    with open(fd, errors="replace") as stream:
        for line in stream:
            logger.debug("MCP server %r stderr: %s", server, line.rstrip()[:2000])


# --- the SDK's answers in our terms -----------------------------------------------------------


async def _list_all_tools(session: ClientSession) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools
    raise RuntimeError(f"the listing went on for more than {MAX_PAGES} pages")


def _definition(tool: mcp_types.Tool) -> ToolDefinition:
    annotations = tool.annotations or mcp_types.ToolAnnotations()
    hints = annotations.model_dump(by_alias=True, exclude_none=True)
    return ToolDefinition(
        name=tool.name,
        description=tool.description or "",
        input_schema=dict(tool.input_schema),
        annotations={key: hints[key] for key in ANNOTATION_HINTS if key in hints},
    )
