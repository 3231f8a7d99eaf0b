"""Benchmark: what an MCP tool call costs through the loop, against the bare SDK client.

    ./workforce bench mcp_overhead [--calls 300] [--tasks 60] [--concurrent 50]

Against the project's test MCP server (tests/fakes/mcp_servers.py, the SDK's own MCPServer):
1. per call over stdio: the bare `mcp` SDK (`ClientSession.call_tool` in asyncio, on a thread of
   its own with one session open), our synchronous client (tasks.mcp.client, a session reused),
   in batches taken in turns;
2. per call through the loop: tasks that make three `lookup_order` calls against tasks that
   make three calls of a no-op built-in tool, the same zero-latency model answering both, in
   rounds; the median over the rounds of the difference per call is what an MCP call costs in
   the loop (rug-pull check, server lookup, secrets, the step), and "added" is that minus the
   bare SDK call, measured back to back in a batch after every round (so that both figures are
   taken across the same stretch of a shared machine's load);
   The same tasks are also run with the least a synchronous caller can do with the SDK
   (DirectSdk: one session, the calling thread running its loop) in place of our client:
   the difference is our client's share of the figure, the rest is the loop's and the
   server's (a server idle between two calls answers more slowly than one called back to
   back: see the spaced line);
3. `--concurrent` tasks at once (threads of one worker process, a pooled connection each),
   each making three calls of one streamable-HTTP server: wall time and calls per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.loop_overhead import bench_employee, setup_django

SERVER_SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "fakes" / "mcp_servers.py"
CALLS_PER_TASK = 3
ARGUMENTS = {"order_id": "A-1001"}


def _script(body: dict):
    """Three calls of whichever tool the task was given, then a final answer."""
    from tests.fakes.openai_server import reply

    tool = body["tools"][0]["function"]["name"]
    done = sum(1 for message in body["messages"] if message["role"] == "tool")
    if done < CALLS_PER_TASK:
        # Other arguments each time: the same call thrice would trip the loop breaker.
        looks_up = tool.startswith("mcp__") or tool == "bench_lookup"
        arguments = {"order_id": f"A-{1001 + done}"} if looks_up else {"n": done}
        return reply(tool_calls=[(tool, arguments)], prompt_tokens=200, completion_tokens=20)
    return reply("Finished.", prompt_tokens=260, completion_tokens=5)


def _serve(port_queue) -> None:
    from tests.fakes.openai_server import FakeOpenAIServer, dynamic

    server = FakeOpenAIServer().start()
    server.enqueue(dynamic(_script))
    port_queue.put(server.base_url)
    while True:
        time.sleep(3600)


def start_model_server():
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_serve, args=(queue,), daemon=True)
    process.start()
    return queue.get(timeout=10), process


class BareSdk:
    """The SDK's own client, as async code uses it: one session open on an asyncio loop of its
    own thread, timing batches of back-to-back calls when asked (no database, no hops timed)."""

    def __init__(self) -> None:
        import concurrent.futures
        import threading

        self._ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        self.loop, self._stop = self._ready.result(timeout=30)

    async def _serve(self) -> None:
        from mcp import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=sys.executable, args=[str(SERVER_SCRIPT), "stdio"])
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for _ in range(20):
                        await session.call_tool("lookup_order", ARGUMENTS)
                    self._session, stop = session, asyncio.Event()
                    self._ready.set_result((asyncio.get_running_loop(), stop))
                    await stop.wait()

    async def _batch(self, calls: int, gap: float) -> list[float]:
        for _ in range(2):  # as woken from idle: not timed
            await self._session.call_tool("lookup_order", ARGUMENTS)
        times = []
        for _ in range(calls):
            if gap:
                await asyncio.sleep(gap)
            started = time.perf_counter()
            await self._session.call_tool("lookup_order", ARGUMENTS)
            times.append((time.perf_counter() - started) * 1000)
        return times

    def batch(self, calls: int, gap: float = 0.0) -> list[float]:
        """ms per call, `calls` back to back; with `gap`, that many seconds apart (as the
        loop's are, a model call between two)."""
        return asyncio.run_coroutine_threadsafe(self._batch(calls, gap), self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


class DirectSdk:
    """The least a synchronous caller can do with the SDK: one session on an asyncio loop that
    the calling thread runs itself for each call (no timeout, no reconnecting, one thread). Put
    in place of tasks.mcp.client in the loop, it shows what our client costs there."""

    def __init__(self) -> None:
        from tasks.mcp import client

        self.McpError, self.McpTimeout = client.McpError, client.McpTimeout
        self.list_tools = client.list_tools  # the rug-pull check's listing (cached)
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = self.loop.create_future()
        self._holder = self.loop.create_task(self._hold())
        self._session = self.loop.run_until_complete(self._ready)

    async def _hold(self) -> None:
        from mcp import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=sys.executable, args=[str(SERVER_SCRIPT), "stdio"])
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    self._ready.set_result(session)
                    await self._stop.wait()

    def call_tool(self, spec, name: str, arguments: dict, *, timeout: float, max_bytes: int):
        from tasks.mcp.results import call_result

        result = self.loop.run_until_complete(self._session.call_tool(name, arguments))
        return call_result(result, max_bytes)

    def close(self) -> None:
        self._stop.set()
        self.loop.run_until_complete(self._holder)
        self.loop.close()


def client_ms(bare: BareSdk, calls: int) -> tuple[float, float]:
    """Median ms per call of the bare SDK and of our client, in batches of 10 taken in turns."""
    from tasks.mcp import client
    from tests.fakes.mcp_servers import stdio_spec

    spec = stdio_spec()
    for _ in range(20):
        client.call_tool(spec, "lookup_order", ARGUMENTS, timeout=30, max_bytes=100_000)
    theirs, ours = [], []
    for _ in range(max(1, calls // 10)):
        theirs += bare.batch(10)
        for _ in range(2):
            client.call_tool(spec, "lookup_order", ARGUMENTS, timeout=30, max_bytes=100_000)
        for _ in range(10):
            started = time.perf_counter()
            client.call_tool(spec, "lookup_order", ARGUMENTS, timeout=30, max_bytes=100_000)
            ours.append((time.perf_counter() - started) * 1000)
    return statistics.median(theirs), statistics.median(ours)


def _employee(handle: str, tool: str):
    """An employee granted only `tool`: a new grant each run, pinned to the server as it is."""
    from employees.models import ToolGrant

    ToolGrant.objects.filter(employee__handle=handle).delete()
    return bench_employee(handle, tool)


def _server(name: str, **how):
    from aiworkforce.audit import Actor
    from tasks.mcp.services import mcp_server_add, mcp_tools_refresh
    from tasks.models import McpServer

    McpServer.objects.filter(name=name).delete()
    server = mcp_server_add(name=name, actor=Actor.system("benchmark"), **how)
    mcp_tools_refresh(server=server, actor=Actor.system("benchmark"))
    return server


def _task_ms(employee, n: int) -> float:
    from tasks.loop import run_task
    from tasks.models import TaskStatus
    from tasks.services import task_create

    task, _ = task_create(
        employee=employee, title=f"bench {n}", input="Go.", urgent=True, dispatch=False
    )
    started = time.perf_counter()
    status = run_task(task.pk)
    elapsed = (time.perf_counter() - started) * 1000
    assert status == TaskStatus.DONE, status
    return elapsed


def _register_lookalike(server) -> None:
    """A built-in tool with the MCP tool's description and schema, answering what it answers
    (without leaving the process): the loop's cost of a tool that size, minus MCP."""
    from tasks.mcp import client
    from tasks.mcp.services import server_spec
    from tasks.tools import Risk, Tool, register
    from tasks.tools.registry import _REGISTRY

    definition = server.tools.get(name="lookup_order").definition
    result = client.call_tool(
        server_spec(server), "lookup_order", ARGUMENTS, timeout=30, max_bytes=100_000
    )
    answer = {"content": result.text}
    if result.structured is not None:
        answer["structured"] = result.structured
    if "bench_lookup" not in _REGISTRY:
        register(
            Tool(
                name="bench_lookup",
                description=definition["description"],
                parameters=definition["input_schema"],
                default_risk=Risk.LOW,
                side_effects=False,
                writes_database=False,
                execute=lambda context, arguments: answer,
            )
        )


def through_the_loop_ms(tasks: int, bare: BareSdk) -> dict[str, float]:
    """Per round, one task of each: three MCP calls, the same with DirectSdk in place of our
    client, three no-op built-in calls, three calls of a built-in look-alike of the MCP tool;
    then a batch of bare SDK calls. Medians in ms: the MCP task, the built-in one, the
    difference per call (and its quartiles), the same with DirectSdk, the MCP task's difference
    per call with the look-alike, and the bare SDK call."""
    from tasks.mcp import tools

    server = _server("bench-orders", command=[sys.executable, str(SERVER_SCRIPT), "stdio"])
    _register_lookalike(server)
    with_mcp = _employee("bench-mcp", "mcp:bench-orders/lookup_order")
    with_echo = _employee("bench-echo", "bench_echo")
    with_lookalike = _employee("bench-lookalike", "bench_lookup")
    ours, direct = tools.client, DirectSdk()

    def mcp_task_ms(n: int, client) -> float:
        tools.client = client
        try:
            return _task_ms(with_mcp, n)
        finally:
            tools.client = ours

    for n in range(5):  # warm up: sessions, prepared statements
        mcp_task_ms(n, ours), mcp_task_ms(n, direct)
        _task_ms(with_echo, n), _task_ms(with_lookalike, n)
    mcp, echo, per_call, per_direct_call, per_mcp_call, bare_calls = [], [], [], [], [], []
    for n in range(tasks):
        # Ours and DirectSdk in alternating order, each right before or after the built-in task.
        first, second = (ours, direct) if n % 2 else (direct, ours)
        one = mcp_task_ms(n, first)
        echo.append(_task_ms(with_echo, n))
        other = mcp_task_ms(n, second)
        lookalike = _task_ms(with_lookalike, n)
        mine, theirs = (one, other) if first is ours else (other, one)
        mcp.append(mine)
        per_call.append((mine - echo[-1]) / CALLS_PER_TASK)
        per_direct_call.append((theirs - echo[-1]) / CALLS_PER_TASK)
        per_mcp_call.append((mine - lookalike) / CALLS_PER_TASK)
        bare_calls += bare.batch(10)
    direct.close()
    quartiles = statistics.quantiles(per_call, n=4)
    return {
        "mcp_task": statistics.median(mcp),
        "echo_task": statistics.median(echo),
        "per_call": statistics.median(per_call),
        "per_call_p25": quartiles[0],
        "per_call_p75": quartiles[2],
        "per_direct_call": statistics.median(per_direct_call),
        "per_mcp_call": statistics.median(per_mcp_call),
        "bare": statistics.median(bare_calls),
    }


def concurrent_http(count: int) -> float:
    """Wall seconds for `count` tasks at once, each calling one streamable-HTTP server."""
    from tasks.mcp import client
    from tasks.models import Task, TaskStatus
    from tasks.runner import run_tasks_concurrently
    from tasks.services import task_create
    from tests.fakes.mcp_servers import http_server

    token = secrets.token_urlsafe(16)
    with http_server(token=token) as url:
        _server("bench-http", url=url, headers={"Authorization": f"Bearer {token}"})
        employee = _employee("bench-http-user", "mcp:bench-http/lookup_order")
        ids = [
            task_create(
                employee=employee, title=f"burst {n}", input="Go.", urgent=True, dispatch=False
            )[0].pk
            for n in range(count)
        ]
        started = time.perf_counter()
        run_tasks_concurrently(ids, concurrency=count)
        elapsed = time.perf_counter() - started
        client.close_sessions()  # as a worker would, before the server goes
    done = Task.objects.filter(pk__in=ids, status=TaskStatus.DONE).count()
    assert done == count, f"only {done} of {count} finished"
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args(argv)

    base_url, model = start_model_server()
    os.environ.setdefault("DATABASE_POOL_SIZE", "20")
    setup_django(base_url)
    bare = BareSdk()
    bare_alone, ours = client_ms(bare, args.calls)
    loop = through_the_loop_ms(args.tasks, bare)
    per_call, bare_ms = loop["per_call"], loop["bare"]
    # In the loop a model call separates two tool calls, and a server (and the client's loop
    # thread) woken from idle answers more slowly than one called back to back.
    gap = loop["echo_task"] / (CALLS_PER_TASK + 1) / 1000
    spaced = statistics.median(bare.batch(min(args.calls, 100), gap))
    bare.close()
    print(
        f"MCP tool call over stdio ({args.calls} calls in batches; {args.tasks} rounds of tasks):"
    )
    print(f"  bare mcp SDK (ClientSession.call_tool, asyncio):   {bare_alone:6.2f} ms")
    print(f"  tasks.mcp.client.call_tool (sync, session reused): {ours:6.2f} ms")
    print(f"  bare mcp SDK, in batches between the loop's tasks: {bare_ms:6.2f} ms")
    print(
        f"  one call through the loop (its step included):     {per_call:6.2f} ms "
        f"(quartiles {loop['per_call_p25']:.2f}-{loop['per_call_p75']:.2f})"
    )
    print(
        f"  added by the loop over the bare SDK call:          {per_call - bare_ms:6.2f} ms "
        "(goal <= 1.5 ms)"
    )
    direct = loop["per_direct_call"]
    print(
        f"  the same with the bare SDK in place of our client: {direct:6.2f} ms "
        f"(our client's share: {per_call - direct:+.2f} ms)"
    )
    print(f"  bare mcp SDK, calls {gap * 1000:.0f} ms apart as in the loop: {spaced:6.2f} ms")
    print(f"  added by the loop over that spaced bare SDK call:  {per_call - spaced:6.2f} ms")
    # Against a built-in tool of the same description, schema and answer: what being MCP costs.
    per_mcp_call = loop["per_mcp_call"]
    print(
        f"  one call vs a built-in tool of the same schema and answer: {per_mcp_call:6.2f} ms, "
        f"{per_mcp_call - bare_ms:+.2f} ms over the bare SDK call"
    )
    if args.concurrent:
        seconds = concurrent_http(args.concurrent)
        calls = args.concurrent * CALLS_PER_TASK
        print(
            f"{args.concurrent} tasks at once, {CALLS_PER_TASK} calls each to one streamable-HTTP "
            f"server: {seconds:.2f} s, {calls / seconds:.0f} calls/s"
        )
    model.terminate()


if __name__ == "__main__":
    main()
