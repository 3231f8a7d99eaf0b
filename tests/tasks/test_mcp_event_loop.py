"""The MCP client's event loop, run by the threads that need it (tasks.mcp.event_loop).

Real threads and real asyncio; no database, no server. Times are generous: a shared machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time

import pytest

from tasks.mcp.event_loop import LoopBusy, LoopClosed, SharedLoop


@pytest.fixture
def shared():
    shared = SharedLoop()
    yield shared
    shared.close()


async def answer(value: str, after: float, started: threading.Event | None = None) -> str:
    if started is not None:
        started.set()  # its thread runs the loop now
    await asyncio.sleep(after)
    return value


def in_thread(fn, *args, **kwargs) -> concurrent.futures.Future:
    """Run fn in a thread of its own; the future holds (result, seconds it took)."""
    done: concurrent.futures.Future = concurrent.futures.Future()

    def target() -> None:
        started = time.monotonic()
        try:
            done.set_result((fn(*args, **kwargs), time.monotonic() - started))
        except BaseException as exc:
            done.set_exception(exc)

    threading.Thread(target=target, daemon=True).start()
    return done


def test_the_calling_thread_runs_the_loop_itself(shared):
    async def whose_thread() -> int:
        return threading.get_ident()

    def call() -> tuple[int, int]:
        return shared.run(whose_thread(), wait=5), threading.get_ident()

    # A thread of its own, as a worker's: this test process's main thread may hold an event
    # loop of Playwright's (the browser tests), and that is a different case (below).
    (ran_in, caller), _ = in_thread(call).result(timeout=10)
    assert ran_in == caller
    assert not shared.loop.is_running()  # between calls nobody runs it


def test_a_quick_call_is_answered_while_another_thread_runs_the_loop_for_a_slow_one(shared):
    running = threading.Event()
    slow = in_thread(shared.run, answer("slow", 1.5, running), wait=10)
    assert running.wait(5)

    quick = in_thread(shared.run, answer("quick", 0.05), wait=10)

    assert quick.result(timeout=5)[0] == "quick"
    assert quick.result()[1] < 1.0  # it did not wait for the slow call to end
    assert not slow.done()
    assert slow.result(timeout=5)[0] == "slow"


def test_the_loop_is_handed_to_a_waiting_caller_when_its_runner_is_done(shared):
    running = threading.Event()
    first = in_thread(shared.run, answer("first", 0.3, running), wait=30)
    assert running.wait(5)

    second = in_thread(shared.run, answer("second", 1.0), wait=30)

    assert first.result(timeout=5)[0] == "first"
    # Nobody else runs the loop once the first caller is gone: the second took it over, or it
    # would have waited its full 30 s.
    value, seconds = second.result(timeout=10)
    assert value == "second"
    assert seconds < 3


def test_a_caller_gives_up_on_a_loop_that_a_stuck_thread_holds(shared):
    blocking = threading.Event()

    async def block() -> str:
        blocking.set()
        time.sleep(1.5)  # a synchronous call on the loop: nothing else runs meanwhile
        return "unblocked"

    stuck = in_thread(shared.run, block(), wait=30)
    assert blocking.wait(5)
    started = time.monotonic()

    with pytest.raises(LoopBusy):
        shared.run(answer("never", 0), wait=0.3)

    assert time.monotonic() - started < 1.2
    assert stuck.result(timeout=5)[0] == "unblocked"
    assert shared.run(answer("after", 0), wait=5) == "after"  # and the loop works on


def test_background_work_runs_with_no_caller_and_waits_for_a_runner_to_finish(shared):
    ran = threading.Event()
    runs_on: list[int] = []

    async def work() -> None:
        await asyncio.sleep(0.1)
        runs_on.append(threading.get_ident())
        ran.set()

    shared.run_in_background(work)
    assert ran.wait(5)
    assert runs_on != [threading.get_ident()]

    ran.clear()
    running = threading.Event()
    busy = in_thread(shared.run, answer("busy", 0.5, running), wait=10)
    assert running.wait(5)
    shared.run_in_background(work)
    assert busy.result(timeout=5)
    assert ran.wait(5)  # started when the runner handed the loop back


def test_a_caller_finding_the_loop_idle_first_handles_what_arrived_meanwhile(shared):
    """As a server's end does: an I/O event, then a few task wake-ups before a session hears,
    all while no thread runs the loop; the next caller's coroutine must see it has happened."""
    reading, writing = socket.socketpair()
    heard: list[str] = []

    async def listen() -> None:
        arrived = asyncio.Event()
        shared.loop.add_reader(reading.fileno(), arrived.set)
        await arrived.wait()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        heard.append(reading.recv(10).decode())

    tasks: list[asyncio.Task] = []  # the loop keeps only a weak reference to a task

    async def start() -> None:
        tasks.append(asyncio.create_task(listen()))
        await asyncio.sleep(0)

    async def what_was_heard() -> list[str]:
        return list(heard)

    try:
        shared.run(start(), wait=5)
        writing.send(b"gone")  # while nobody runs the loop
        time.sleep(0.05)
        assert shared.has_pending_io()

        assert shared.run(what_was_heard(), wait=5) == ["gone"]
        assert not shared.has_pending_io()
    finally:
        shared.loop.remove_reader(reading.fileno())
        reading.close()
        writing.close()


def test_closing_releases_waiting_callers_and_refuses_new_ones():
    shared = SharedLoop()
    started = threading.Event()
    running = in_thread(shared.run, answer("running", 1.5, started), wait=10)
    assert started.wait(5)
    waiting = in_thread(shared.run, answer("waiting", 5), wait=30)
    deadline = time.monotonic() + 5
    while not shared._waiting:  # it has handed its coroutine to the running loop
        assert time.monotonic() < deadline
        time.sleep(0.01)

    shared.close()

    with pytest.raises(concurrent.futures.CancelledError):
        waiting.result(timeout=2)
    with pytest.raises(LoopClosed):
        shared.run(answer("late", 0), wait=5)
    assert running.result(timeout=5)[0] == "running"
    assert shared.loop.is_closed()  # once its last runner was done


def test_a_caller_inside_an_event_loop_of_its_own_gets_its_answer(shared):
    async def caller() -> str:
        return shared.run(answer("from async code", 0.01), wait=5)

    # In a thread of its own: asyncio.run refuses a thread that runs a loop already (this
    # process's main thread may, after the browser tests).
    result, _ = in_thread(asyncio.run, caller()).result(timeout=10)
    assert result == "from async code"
