"""Benchmark: what an MCP tool call costs through the loop, against the bare SDK client.

    ./workforce bench mcp_overhead [--calls 300] [--tasks 30] [--concurrent 50]

Against the project's test MCP server (tests/fakes/mcp_servers.py, the SDK's own MCPServer):
1. per call over stdio: the bare `mcp` SDK (`ClientSession.call_tool` in asyncio), our
   synchronous client (tasks.mcp.client, the SDK on one event-loop thread, a session reused);
2. per call through the loop: tasks that make three `lookup_order` calls against tasks that
   make three calls of a no-op built-in tool, the same zero-latency model answering both; the
   difference per call is what an MCP call costs in the loop (rug-pull check, server lookup,
   secrets, the step), and "added" is that minus the bare SDK call;
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


def bare_sdk_ms(calls: int, gap: float = 0.0) -> float:
    """Median ms per call with the SDK's own client, no threads, no database; with `gap`,
    the calls are that many seconds apart (as the loop's are, a model call between two)."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    async def run() -> list[float]:
        params = StdioServerParameters(command=sys.executable, args=[str(SERVER_SCRIPT), "stdio"])
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    for _ in range(20):
                        await session.call_tool("lookup_order", ARGUMENTS)
                    times = []
                    for _ in range(calls):
                        if gap:
                            await asyncio.sleep(gap)
                        started = time.perf_counter()
                        await session.call_tool("lookup_order", ARGUMENTS)
                        times.append((time.perf_counter() - started) * 1000)
                    return times

    return statistics.median(asyncio.run(run()))


def our_client_ms(calls: int) -> float:
    from tasks.mcp import client
    from tests.fakes.mcp_servers import stdio_spec

    spec = stdio_spec()
    for _ in range(20):
        client.call_tool(spec, "lookup_order", ARGUMENTS, timeout=30, max_bytes=100_000)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        client.call_tool(spec, "lookup_order", ARGUMENTS, timeout=30, max_bytes=100_000)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


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


def through_the_loop_ms(tasks: int) -> tuple[float, float, float]:
    """Median ms per task: three MCP calls, three no-op built-in calls, three calls of a
    built-in look-alike of the MCP tool (taken in turns)."""
    server = _server("bench-orders", command=[sys.executable, str(SERVER_SCRIPT), "stdio"])
    _register_lookalike(server)
    with_mcp = _employee("bench-mcp", "mcp:bench-orders/lookup_order")
    with_echo = _employee("bench-echo", "bench_echo")
    with_lookalike = _employee("bench-lookalike", "bench_lookup")
    for n in range(5):  # warm up: sessions, prepared statements
        _task_ms(with_mcp, n), _task_ms(with_echo, n), _task_ms(with_lookalike, n)
    mcp, echo, lookalike = [], [], []
    for n in range(tasks):
        mcp.append(_task_ms(with_mcp, n))
        echo.append(_task_ms(with_echo, n))
        lookalike.append(_task_ms(with_lookalike, n))
    return statistics.median(mcp), statistics.median(echo), statistics.median(lookalike)


def concurrent_http(count: int) -> float:
    """Wall seconds for `count` tasks at once, each calling one streamable-HTTP server."""
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
    done = Task.objects.filter(pk__in=ids, status=TaskStatus.DONE).count()
    assert done == count, f"only {done} of {count} finished"
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args(argv)

    base_url, model = start_model_server()
    os.environ.setdefault("DATABASE_POOL_SIZE", "20")
    setup_django(base_url)
    bare = bare_sdk_ms(args.calls)
    ours = our_client_ms(args.calls)
    mcp_task, echo_task, lookalike_task = through_the_loop_ms(args.tasks)
    per_call = (mcp_task - echo_task) / CALLS_PER_TASK
    # Against a built-in tool of the same description, schema and answer: what being MCP costs.
    per_mcp_call = (mcp_task - lookalike_task) / CALLS_PER_TASK
    # In the loop a model call separates two tool calls, and a server (and the client's loop
    # thread) woken from idle answers more slowly than one called back to back.
    gap = echo_task / (CALLS_PER_TASK + 1) / 1000
    spaced = bare_sdk_ms(min(args.calls, 100), gap)
    print(
        f"MCP tool call over stdio, median of {args.calls} calls ({args.tasks} tasks x 3 through the loop):"
    )
    print(f"  bare mcp SDK (ClientSession.call_tool, asyncio):   {bare:6.2f} ms")
    print(f"  tasks.mcp.client.call_tool (sync, session reused): {ours:6.2f} ms")
    print(f"  one call through the loop (its step included):     {per_call:6.2f} ms")
    print(
        f"  added by the loop over the bare SDK call:          {per_call - bare:6.2f} ms (goal <= 1.5 ms)"
    )
    print(f"  bare mcp SDK, calls {gap * 1000:.0f} ms apart as in the loop: {spaced:6.2f} ms")
    print(f"  added by the loop over that spaced bare SDK call:  {per_call - spaced:6.2f} ms")
    print(
        f"  one call vs a built-in tool of the same schema and answer: {per_mcp_call:6.2f} ms, "
        f"{per_mcp_call - bare:+.2f} ms over the bare SDK call"
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
