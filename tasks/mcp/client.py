"""A synchronous client for MCP tool servers, over the official async SDK.

The agent loop runs on worker threads and cannot await. Each process has one event loop holding
its sessions, and the thread that makes a request runs that loop itself while it waits for the
answer (tasks.mcp.event_loop): no hop to a loop thread and back, which was most of what the
client added to a call. Each `ServerSpec` has one session per process (tasks.mcp.session): a
stdio server is started once and serves every call, and calls from many threads at once share
it. A session that fails (the server died, a call timed out) is discarded and closed in the
background, and the next call reconnects; one idle for IDLE_TIMEOUT is closed. Every wait is
bounded by the caller's timeout, connecting included.

A child forked by django-q2 starts its own loop and sessions and never touches the parent's; a
process closes its sessions when it exits (a django-q2 worker too, through multiprocessing's
exit hooks, as it does not run atexit). Secrets (env values of a stdio server, header values of
an HTTP one) never appear in a repr, a log line or an exception message. This module imports
no Django models.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import logging
import multiprocessing.util
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

import anyio
import anyio.abc
import mcp_types
from mcp import ClientSession

from tasks.mcp.event_loop import LoopBusy, LoopClosed, SharedLoop
from tasks.mcp.results import CallResult, call_result
from tasks.mcp.session import Connection, SessionExpired
from tasks.mcp.spec import (
    TRANSPORTS,
    McpError,
    McpTimeout,
    McpUnavailable,
    ServerSpec,
    display_url,
    mcp_error,
)

__all__ = [
    "TRANSPORTS",
    "CallResult",
    "McpError",
    "McpTimeout",
    "McpUnavailable",
    "ServerSpec",
    "ToolDefinition",
    "call_tool",
    "close_sessions",
    "display_url",
    "list_tools",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

ANNOTATION_HINTS = ("title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
MAX_PAGES = 100  # of a tool listing; a server that pages on and on is broken
CLOSE_TIMEOUT = 10.0  # closing sessions; the SDK bounds a stdio shutdown at about 6 s
LOOP_GRACE = 5.0  # what a caller waits beyond its timeout should another thread hold the loop
IDLE_TIMEOUT = 600.0  # a session unused this long is closed (its spec may never come back)


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
    """Close every session of this process and its event loop (tests, shutdown).

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


# --- one event loop per process ---------------------------------------------------------------


class _Pool:
    """This process's event loop and its sessions (the dicts are touched only on the loop)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.shared = SharedLoop()
        self.connections: dict[ServerSpec, Connection] = {}
        self.closing: set[Connection] = set()  # discarded, not closed yet
        self._holder: asyncio.Task | None = None
        self._task_group = self.shared.run(self._open_task_group(), wait=LOOP_GRACE)

    async def _open_task_group(self) -> anyio.abc.TaskGroup:
        started = asyncio.get_running_loop().create_future()
        self._holder = asyncio.create_task(_hold_task_group(started))
        return await started

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
            except SessionExpired as exc:
                # A new session, and only a listing is resent: the 404 may be another request's
                # on this connection, so a call's outcome is unknown and it is never sent twice.
                remaining = deadline - anyio.current_time()
                if not resend or remaining <= 0:
                    why = f"forgot its session during {what} (HTTP 404); not sent again, so its"
                    raise mcp_error(McpUnavailable, spec, f"{why} outcome is unknown") from exc
                return await self._connection(spec, remaining).request(what, remaining, fn)

        try:
            return self.shared.run(on_loop(), wait=timeout + LOOP_GRACE)
        except (asyncio.CancelledError, concurrent.futures.CancelledError, LoopClosed):
            raise mcp_error(McpUnavailable, spec, f"was closed during {what}") from None
        except LoopBusy:
            raise mcp_error(
                McpTimeout, spec, f"did not answer {what} within {timeout:g} s (client loop stuck)"
            ) from None
        finally:
            if self.closing:  # a session to close: it goes on with no caller
                self.shared.run_in_background(self._finish_closing)

    def _connection(self, spec: ServerSpec, timeout: float) -> Connection:
        now = anyio.current_time()
        for other in list(self.connections.values()):
            if other.finished.is_set():
                del self.connections[other.spec]
            elif other.in_flight == 0 and now - other.last_used > IDLE_TIMEOUT:
                other.discard()
        connection = self.connections.get(spec)
        if connection is None or not connection.usable:
            connection = Connection(spec, connect_timeout=timeout, on_closing=self.closing.add)
            self.connections[spec] = connection
            self._task_group.start_soon(connection.run, name=f"MCP session {spec.name!r}")
        return connection

    async def _finish_closing(self) -> None:
        """Run the loop until the discarded sessions are closed (stdio: the server stopped)."""
        with anyio.move_on_after(CLOSE_TIMEOUT):
            while self.closing:
                connection = next(iter(self.closing))
                await connection.finished.wait()
                self.closing.discard(connection)
        if self.closing:
            names = ", ".join(sorted(repr(c.spec.name) for c in self.closing))
            logger.warning("MCP client: sessions of %s did not close in time", names)
            self.closing.clear()

    async def _close_all(self) -> None:
        connections = [*self.connections.values(), *self.closing]
        self.connections.clear()
        for connection in connections:
            connection.discard()
        with anyio.move_on_after(CLOSE_TIMEOUT):
            for connection in connections:
                await connection.finished.wait()
        self.closing.clear()
        self._task_group.cancel_scope.cancel()
        if self._holder is not None:
            await asyncio.wait([self._holder], timeout=CLOSE_TIMEOUT)

    def stop(self) -> None:
        try:
            self.shared.run(self._close_all(), wait=2 * CLOSE_TIMEOUT + LOOP_GRACE)
        except (LoopClosed, LoopBusy):
            pass
        finally:
            self.shared.close()


async def _hold_task_group(started: asyncio.Future) -> None:
    """Keep a task group open on the loop for the sessions' long-lived tasks."""
    async with anyio.create_task_group() as task_group:
        started.set_result(task_group)
        await anyio.sleep_forever()


_lock = threading.Lock()
_pool: _Pool | None = None
# A parent's pools, kept referenced in a forked child so that no finalizer of theirs ever runs
# here: a subprocess transport's finalizer would kill the parent's server process.
_abandoned: list[_Pool] = []
_exit_hook_pid = 0  # the process that registered close_sessions with multiprocessing's exit


def _current_pool() -> _Pool:
    global _pool, _exit_hook_pid
    with _lock:
        if _pool is not None and _pool.pid != os.getpid():
            _abandoned.append(_pool)
            _pool = None
        if _pool is None:
            _pool = _Pool()
            if _exit_hook_pid != _pool.pid:
                # A multiprocessing child (a django-q2 worker) runs these hooks when it exits,
                # not atexit's; a forked child starts with none of its parent's.
                multiprocessing.util.Finalize(None, close_sessions, exitpriority=10)
                _exit_hook_pid = _pool.pid
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
