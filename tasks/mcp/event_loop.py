"""An asyncio event loop that the threads needing it run themselves, one thread at a time.

The agent loop is synchronous and the MCP SDK is async. A loop thread of its own would cost every
call two hops between threads (hand the request over, be woken with the answer), each a wake-up
of a sleeping thread; on a small virtual machine, most of what the client adds to a call. Here the
calling thread runs the loop itself (`run_until_complete`) while it waits for its answer, as the
bare SDK's caller does. One thread runs the loop at a time: a second caller hands its coroutine
to the loop (`run_coroutine_threadsafe`) and waits for its answer, or for its turn to run the loop
should the first caller be done sooner; its request progresses either way, so calls from many
threads share the loop's sessions concurrently.

Between calls nobody runs the loop, so what arrived meanwhile (a server's end, a notification)
waits in the selector until the next caller, who handles it before its own coroutine starts;
work that must go on with no caller (closing a session) runs on a helper thread
(`run_in_background`).
"""

from __future__ import annotations

import asyncio
import logging
import select
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A server's end reaches the session three iterations after the loop saw its I/O event.
SETTLE_QUIET_ROUNDS = 6
SETTLE_MAX_ROUNDS = 50


class LoopClosed(RuntimeError):
    """The loop was closed (close_sessions) before this request could run."""


class LoopBusy(TimeoutError):
    """Another thread has been running the loop too long: it is stuck, not waiting for I/O."""


class _Turn:
    """One caller: the future of its coroutine (None when it runs the loop from the start)."""

    __slots__ = ("future", "woken")

    def __init__(self, future: Future | None = None) -> None:
        self.future = future
        self.woken = threading.Event()  # its future is done, or the loop was handed to it


class SharedLoop:
    """An event loop any thread may run, one at a time, each until its own coroutine is done."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self.loop = asyncio.SelectorEventLoop(self._selector)
        self._poll = select.poll()  # is anything waiting in the selector? (one syscall)
        self._poll.register(self._selector.fileno(), select.POLLIN)
        self._lock = threading.Lock()
        self._runner: _Turn | None = None  # who runs the loop now
        self._waiting: deque[_Turn] = deque()  # callers whose coroutine is on the loop
        self._closing = False
        self._background: Callable[[], Coroutine[Any, Any, Any]] | None = None

    def run(self, coro: Coroutine[Any, Any, T], *, wait: float) -> T:
        """Run `coro` on the loop from this thread and return its result (or raise its error).

        The coroutine bounds its own time; `wait` bounds only how long this thread waits for a
        loop that another thread runs without ever handing it over (LoopBusy)."""
        if _loop_running_here():  # an async caller: it may not run a second loop in its thread
            return _in_a_thread(lambda: self.run(coro, wait=wait))
        with self._lock:
            if self._closing:
                coro.close()
                raise LoopClosed("the MCP client was closed")
            if self._runner is None:
                turn = self._runner = _Turn()
            else:
                # Someone else runs the loop: our coroutine runs there meanwhile.
                turn = _Turn(asyncio.run_coroutine_threadsafe(coro, self.loop))
                turn.future.add_done_callback(lambda _: turn.woken.set())
                self._waiting.append(turn)
        if turn.future is None:
            try:
                return self.loop.run_until_complete(self._settled(coro))
            finally:
                self._hand_over()
        return self._follow(turn, time.monotonic() + wait)

    def _follow(self, turn: _Turn, deadline: float) -> Any:
        future = turn.future
        turn.woken.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            ours = self._runner is turn
            if not ours:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                if not future.done():
                    future.cancel()
                    raise LoopBusy("the MCP client's event loop is stuck")
        if ours:  # handed the loop before our answer came: run it until it does
            try:
                self.loop.run_until_complete(asyncio.wrap_future(future, loop=self.loop))
            except BaseException:
                if not future.done():
                    raise
            finally:
                self._hand_over()
        return future.result()

    def _hand_over(self) -> None:
        """Pass the loop to the next caller whose answer has not come yet, if any."""
        with self._lock:
            while self._waiting:
                turn = self._waiting.popleft()
                if not turn.future.done():
                    self._runner = turn
                    turn.woken.set()
                    return
            self._runner = None
            if self._closing:
                self.loop.close()
                return
            work, self._background = self._background, None
        if work is not None:
            threading.Thread(
                target=self._run_background, args=(work,), daemon=True, name="mcp-background"
            ).start()

    def run_in_background(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Have `work()` run on the loop by a helper thread once the loop is free: what must go
        on with no caller (a session closing). One at a time; a newer request replaces one
        still waiting, so `work` should do whatever is pending when it runs."""
        with self._lock:
            if self._closing:
                return
            self._background = work
            if self._runner is not None:
                return  # started when the runner hands the loop over
            self._background = None
        threading.Thread(
            target=self._run_background, args=(work,), daemon=True, name="mcp-background"
        ).start()

    def _run_background(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            self.run(work(), wait=3600)
        except LoopClosed:
            pass
        except Exception:
            logger.exception("MCP client: background work failed")

    def has_pending_io(self) -> bool:
        """Whether the selector holds events no thread has handled yet."""
        return bool(self._poll.poll(0))

    async def _settled(self, coro: Coroutine[Any, Any, T]) -> T:
        """`coro`, once what arrived while no thread ran the loop is handled: a session whose
        server went away meanwhile is then known to be gone before a request picks it. (A
        caller whose coroutine joins a running loop needs none of this.)"""
        if self.has_pending_io():
            await self._settle()
        return await coro

    async def _settle(self) -> None:
        quiet = 0
        for _ in range(SETTLE_MAX_ROUNDS):
            await asyncio.sleep(0)
            quiet = 0 if self.has_pending_io() else quiet + 1
            if quiet == SETTLE_QUIET_ROUNDS:
                return

    def close(self) -> None:
        """No new requests; the loop is closed once no thread runs it (now, if none does).
        Run what must finish first (closing the sessions) before."""
        with self._lock:
            self._closing = True
            waiting, self._waiting = list(self._waiting), deque()
            if self._runner is None:
                self.loop.close()
        for turn in waiting:  # told at once, their coroutines cancelled
            turn.future.cancel()


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_a_thread[R](fn: Callable[[], R]) -> R:
    outcome: Future = Future()

    def target() -> None:
        try:
            outcome.set_result(fn())
        except BaseException as exc:
            outcome.set_exception(exc)

    threading.Thread(target=target, daemon=True, name="mcp-call").start()
    return outcome.result()
