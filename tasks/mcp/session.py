"""One session with one MCP server, held open by one long-lived task on the client's loop.

The SDK's context managers (transport, session) must be entered and left by one task, so a
`Connection` is a task (`run`) that opens them, serves requests (`request`, from other tasks)
and closes them when it is discarded or its server goes away. A stdio server is started once
and serves every call of the session, concurrent ones included. This module imports no Django
models; no secret appears in a log line or an error message.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import anyio
import httpx2
import mcp_types
from mcp import ClientSession, StdioServerParameters
from mcp.client.extension import UnexpectedClaimedResult
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from tasks.mcp.spec import McpError, McpTimeout, McpUnavailable, ServerSpec, display_url, mcp_error

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLIENT_INFO = mcp_types.Implementation(name="ai-workforce", version="1")
SESSION_FATAL_STATUSES = (401, 403, 404)  # after these an HTTP session is of no further use


class Connection:
    """One session with one server, held open by one task (`run`) on the client's loop.
    `on_closing` is told once the connection starts closing, which goes on with no caller."""

    def __init__(
        self,
        spec: ServerSpec,
        *,
        connect_timeout: float,
        on_closing: Callable[[Connection], None] = lambda connection: None,
    ) -> None:
        self.spec = spec
        self._on_closing = on_closing
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
        self._start_closing()
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
                WatchedStream(read_stream, self._server_went_away),
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
        self._start_closing()

    def _start_closing(self) -> None:
        if not self.closing:
            self.closing = True
            self._on_closing(self)
        self.wake.set()

    async def _open_transport(self, stack: AsyncExitStack) -> Any:
        spec = self.spec
        if spec.transport == "stdio":
            read_fd, write_fd = os.pipe()
            threading.Thread(
                target=log_stderr, args=(spec.name, read_fd), daemon=True, name="mcp-stderr"
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
                if not self.ready.is_set():  # (waiting on a set event would yield a round)
                    await self.ready.wait()
                if self.session is None:
                    raise copy_error(
                        self.error or mcp_error(McpUnavailable, spec, "could not connect")
                    )
                return await fn(self.session)
        except TimeoutError:
            phase = "connect" if self.session is None else "answer"
            error = mcp_error(McpTimeout, spec, f"did not {phase} within {timeout:g} s ({what})")
            self.discard(error)
            raise error from None
        except MCPError as exc:
            if self.http_status is not None:
                self.discard()
                if self.http_status == 404 and self.session is not None:
                    raise SessionExpired(str(self._explain(exc))) from None
                raise self._explain(exc) from None
            if exc.code == mcp_types.CONNECTION_CLOSED:
                self.discard()
                with anyio.move_on_after(0.5):  # the transport may yet say why
                    await self.finished.wait()
                closed = mcp_error(McpUnavailable, spec, f"closed the connection during {what}")
                raise copy_error(self.error or closed) from None
            raise mcp_error(
                McpError, spec, f"refused {what}: {exc.message} (code {exc.code})"
            ) from None
        except (ValidationError, RuntimeError, UnexpectedClaimedResult) as exc:
            raise mcp_error(
                McpUnavailable, spec, f"answered {what} with invalid MCP: {exc}"
            ) from None
        finally:
            self.in_flight -= 1
            self.last_used = anyio.current_time()

    def _explain(self, exc: BaseException) -> McpError:
        """Why connecting (or the session) failed, for a person to act on."""
        spec, cause = self.spec, _root_cause(exc)
        if self.http_status in (401, 403):
            return mcp_error(
                McpUnavailable, spec, f"refused the credentials (HTTP {self.http_status})"
            )
        if self.http_status == 404:
            state = "has no MCP endpoint" if self.session is None else "forgot the session"
            return mcp_error(McpUnavailable, spec, f"{state} at {display_url(spec.url)} (HTTP 404)")
        if isinstance(cause, TimeoutError):
            return mcp_error(McpTimeout, spec, f"did not connect within {self.connect_timeout:g} s")
        if spec.transport == "stdio" and isinstance(cause, OSError):
            return mcp_error(McpUnavailable, spec, f"could not be started: {cause}")
        if isinstance(cause, httpx2.TransportError):
            reason = str(cause) or type(cause).__name__
            return mcp_error(
                McpUnavailable, spec, f"could not be reached at {display_url(spec.url)}: {reason}"
            )
        if isinstance(cause, MCPError) and cause.code == mcp_types.CONNECTION_CLOSED:
            ended = "exited" if spec.transport == "stdio" else "closed the connection"
            return mcp_error(McpUnavailable, spec, f"{ended} while connecting")
        if isinstance(cause, MCPError):
            return mcp_error(McpUnavailable, spec, f"refused to start a session: {cause.message}")
        return mcp_error(McpUnavailable, spec, f"failed: {type(cause).__name__}: {cause}")


class SessionExpired(McpUnavailable):
    """The HTTP server forgot the session (404): it never ran the request, which may be retried."""


def copy_error(error: McpError) -> McpError:
    """A fresh instance, so that callers sharing one failure do not share one traceback."""
    return type(error)(*error.args)


def _root_cause(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups, as task groups raise them."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = (inner or list(exc.exceptions))[0]
    return exc


class WatchedStream:
    """The transport's read stream (which the SDK's dispatcher iterates), telling us when it ends:
    the server went away, and the next call should not wait to find out."""

    def __init__(self, stream: Any, on_end: Callable[[], None]) -> None:
        self._stream = stream
        self._on_end = on_end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def __aenter__(self) -> WatchedStream:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._stream.__aexit__(*exc_info)

    def __aiter__(self) -> WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError):
            self._on_end()
            raise


def log_stderr(server: str, fd: int) -> None:
    """A stdio server's stderr goes to our log (DEBUG), never to our stdout; until EOF."""
    with open(fd, errors="replace") as stream:
        for line in stream:
            logger.debug("MCP server %r stderr: %s", server, line.rstrip()[:2000])
