"""Benchmark: what the durable agent loop costs per step, against a bare-SDK baseline.

    ./workforce bench loop_overhead [--tasks 50] [--concurrent 200]

Each task makes three tool calls and then gives its final answer, against a zero-latency
OpenAI-compatible server running in a separate process (so its CPU is not counted as ours).
For every step the loop commits its trace to PostgreSQL, reserves and settles the budget,
and writes the audit trail; each task recalls from an employee that remembers 200 things and
leaves an episode. The baseline is a hand-written loop over the bare `openai` SDK against the
same server, with no database. Baseline and our tasks are taken in turns, so both see the same
noise of a shared machine: compare the ratio.

A second run starts 200 such tasks at once with a model that takes 1 s per call and reports
the wall time until all are done, as the worker cluster runs them (Q_WORKERS processes, tasks
on threads sharing a small connection pool), next to the same burst through the bare SDK
(the physical limit is 4 s: four sequential calls).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.databases import bench_database_url

TOOL_CALLS_PER_TASK = 3


def _script(body: dict):
    """The model: three tool calls, then a final answer (counted from the tool results so far)."""
    from tests.fakes.openai_server import reply

    done = sum(1 for message in body["messages"] if message["role"] == "tool")
    if done < TOOL_CALLS_PER_TASK:
        return reply(
            tool_calls=[("bench_echo", {"n": done})], prompt_tokens=200, completion_tokens=20
        )
    return reply("Finished.", prompt_tokens=260, completion_tokens=5)


def _serve(latency: float, port_queue) -> None:
    from tests.fakes.openai_server import FakeOpenAIServer, delay, dynamic

    server = FakeOpenAIServer().start()
    handler = (lambda body: delay(latency, _script(body))) if latency else _script
    server.enqueue(dynamic(handler))
    port_queue.put(server.base_url)
    while True:
        time.sleep(3600)


def start_model_server(latency: float = 0.0) -> tuple[str, multiprocessing.Process]:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_serve, args=(latency, queue), daemon=True)
    process.start()
    return queue.get(timeout=10), process


def baseline_task(client) -> tuple[float, float]:
    """One task as a hand-written tool loop over the bare SDK: no database, nothing durable.
    Returns wall and CPU ms per step."""
    tool = {
        "type": "function",
        "function": {"name": "bench_echo", "parameters": {"type": "object"}},
    }
    wall, cpu = time.perf_counter(), time.process_time()
    messages = [
        {"role": "system", "content": "You are a benchmark."},
        {"role": "user", "content": "Go."},
    ]
    steps = 0
    while True:
        response = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=[tool]
        )
        message = response.choices[0].message
        steps += 1
        if not message.tool_calls:
            break
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            result = {"echo": json.loads(call.function.arguments)}
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
            )
    return (time.perf_counter() - wall) * 1000 / steps, (time.process_time() - cpu) * 1000 / steps


def our_task(employee, n: int) -> tuple[float, float, float]:
    """One task through the durable loop. Returns wall and CPU ms and statements per step."""
    from django.db import connection

    from tasks.loop import run_task
    from tasks.models import Step, StepKind, TaskStatus
    from tasks.services import task_create

    task, _ = task_create(
        employee=employee, title=f"bench {n}", input="Go.", urgent=True, dispatch=False
    )
    statements = 0

    def count(execute, sql, params, many, context):
        # Not CaptureQueriesContext: its debug cursor would add its own CPU to ours.
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        wall, cpu = time.perf_counter(), time.process_time()
        status = run_task(task.pk)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert status == TaskStatus.DONE, status
    turns = Step.objects.filter(task=task, kind=StepKind.LLM_CALL).count()
    return wall * 1000 / turns, cpu * 1000 / turns, statements / turns


# What two of the loop's merged statements save, measured in the same run: the loop as shipped,
# then without carrying a tool's result in the next turn's reservation (tasks.loop.state's
# `hold`), then also with each tool step's audit entry written by the ORM in a transaction
# around the step instead of in the step's statement.
VARIANTS = {
    "merged": "as shipped (merged statements)",
    "no_carry": "tool results not carried with the reservation",
    "audit_apart": "... and audit entries in a transaction, ORM",
}


@contextlib.contextmanager
def variant(name: str):
    """The loop with some of its merged statements written the plain way (see VARIANTS)."""
    from django.db import transaction

    from aiworkforce.audit import Actor, audit_log
    from tasks.loop.state import Turn

    record, record_result = Turn.record, Turn.record_result

    def record_without_carry(self, *args, hold=False, **kwargs):
        return record(self, *args, **kwargs)

    def record_result_audit_apart(self, *args, audit=None, hold=False, **kwargs):
        if audit is None:
            return record_result(self, *args, **kwargs)
        with transaction.atomic():
            step = record_result(self, *args, **kwargs)
            actor = Actor.for_employee(self.task.employee)
            audit_log(action=audit[0], actor=actor, subject=self.task, data=audit[1])
        return step

    if name in ("no_carry", "audit_apart"):
        Turn.record = record_without_carry
    if name == "audit_apart":
        Turn.record_result = record_result_audit_apart
    try:
        yield
    finally:
        Turn.record, Turn.record_result = record, record_result


def measure(base_url: str, tasks: int) -> tuple[list, dict, dict]:
    """Baseline and our tasks taken in turns, so both see the same noise of a shared machine.

    Returns the baseline's (wall, CPU) per step, and per variant of the loop the same and the
    median number of statements per step."""
    import openai

    from employees.memory.services import memories_embed_pending

    client = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0)
    employee = bench_employee()
    reset_memory(employee)
    base = []
    mine = {name: [] for name in VARIANTS}
    queries = {name: [] for name in VARIANTS}
    for n in range(tasks):
        base.append(baseline_task(client))
        for name in VARIANTS:
            with variant(name):
                wall, cpu, statements = our_task(employee, n)
            mine[name].append((wall, cpu))
            queries[name].append(statements)
    memories_embed_pending()  # what the embedding job does with this run's episodes
    return base, mine, {name: statistics.median(counts) for name, counts in queries.items()}


def setup_django(base_url: str, migrate: bool = True) -> None:
    import django

    os.environ["OPENAI_API_KEY"] = "bench-key"
    os.environ["OPENAI_BASE_URL"] = base_url
    os.environ["LLM_MAX_RETRIES"] = "0"
    os.environ["LOG_LEVEL"] = "WARNING"
    # Measured as deployed: DEBUG off (Django's debug cursor wrapper costs CPU per query).
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "benchmark-" + "x1y2z3" * 10)
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = bench_database_url("aiworkforce_bench")
    django.setup()
    from django.core.management import call_command

    if migrate:
        call_command("migrate", verbosity=0)
    from tasks.tools import Risk, Tool, register
    from tasks.tools.registry import _REGISTRY

    if "bench_echo" not in _REGISTRY:
        register(
            Tool(
                name="bench_echo",
                description="Echo the arguments (benchmark only).",
                parameters={"type": "object"},
                default_risk=Risk.LOW,
                side_effects=False,
                writes_database=False,
                execute=lambda context, arguments: {"echo": arguments},
            )
        )


def bench_employee(handle: str = "bench-runner", tool: str = "bench_echo"):
    """An active employee with one automatic grant (made once; the grant is checked each run)."""
    from decimal import Decimal

    from aiworkforce.audit import Actor
    from employees import services
    from employees.models import Employee, EmployeeStatus, Team, ToolGrant, ToolPolicy

    employee = Employee.objects.filter(handle=handle).first()
    if employee is None:
        team, _ = Team.objects.get_or_create(name="Benchmarks")
        employee = services.employee_create(
            employee=Employee(
                name=handle,
                handle=handle,
                team=team,
                role_title="Benchmark",
                job_description="Runs benchmarks.",
                status=EmployeeStatus.ACTIVE,
                max_cost_per_task=Decimal("1000"),
                max_cost_per_day=Decimal("100000"),
            ),
            actor=Actor.system("benchmark"),
        )
    if not employee.tool_grants.filter(tool_name=tool).exists():
        employee.tool_grants.all().delete()
        services.tool_grant_save(
            grant=ToolGrant(employee=employee, tool_name=tool, policy=ToolPolicy.AUTO),
            actor=Actor.system("benchmark"),
        )
    return employee


MEMORIES = 200


def reset_memory(employee) -> None:
    """Each run starts from the same memory: an employee that remembers MEMORIES things, so
    every task recalls, as in production. (Episodes of earlier runs would pile up and make each
    run's recall a little slower than the last.) The queue of embedding jobs that no worker
    serves here is emptied too, and the employee's memory partition is vacuumed: the deleted
    memories would otherwise stay in its HNSW graph (until autovacuum comes by), and every
    recall would walk them."""
    from django.db import connection
    from django_q.models import OrmQ

    from aiworkforce.audit import Actor
    from employees.memory.services import memory_remember
    from employees.models import MemoryEntry, MemoryKind

    MemoryEntry.objects.filter(employee=employee).delete()
    OrmQ.objects.all().delete()
    actor = Actor.system("benchmark")
    for n in range(MEMORIES):
        memory_remember(
            kind=MemoryKind.FACT,
            text=f"Customer {n} prefers replies {'before' if n % 2 else 'after'} noon; ticket {n * 7}.",
            actor=actor,
            employee=employee,
        )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) employees_memoryentry_e{int(employee.pk)}")


def concurrent(count: int, workers: int) -> float:
    """Start `count` tasks at once, run them as the worker cluster does: `workers` processes
    (Q_WORKERS), each running its share on threads that share a small connection pool and hand
    their connection back while they wait for the model. Wall seconds until all are done."""
    import subprocess

    from tasks.models import Task, TaskStatus
    from tasks.services import task_create

    employee = bench_employee()
    ids = [
        task_create(
            employee=employee, title=f"burst {n}", input="Go.", urgent=True, dispatch=False
        )[0].pk
        for n in range(count)
    ]
    shares = [ids[n::workers] for n in range(workers)]
    pool = str(max(2, min(40, count) // workers))
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--burst-worker"],
            env={**os.environ, "DATABASE_POOL_SIZE": pool},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in shares
    ]
    for child in children:  # each has set Django up and opened its pool
        assert child.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for child, share in zip(children, shares, strict=True):
        child.stdin.write(json.dumps(share) + "\n")
        child.stdin.flush()
    for child in children:
        assert child.stdout.readline().strip() == "done"
    elapsed = time.perf_counter() - started
    for child in children:
        child.wait(timeout=30)
    done = Task.objects.filter(pk__in=ids, status=TaskStatus.DONE).count()
    assert done == count, f"only {done} of {count} finished"
    return elapsed


def concurrent_baseline(base_url: str, count: int) -> float:
    """The same burst through the bare SDK on threads, no database: this machine's own limit."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    client = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0, timeout=60)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda _: baseline_task(client), range(count)))
    return time.perf_counter() - started


def burst_worker() -> None:
    """One worker process of `concurrent`: told its task ids on stdin once it is ready."""
    from django.db import connection

    from tasks.runner import run_tasks_concurrently

    connection.ensure_connection()
    print("ready", flush=True)
    ids = json.loads(sys.stdin.readline())
    run_tasks_concurrently(ids, concurrency=len(ids))
    print("done", flush=True)


def _median(pairs, index):
    return statistics.median(pair[index] for pair in pairs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--burst", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--burst-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.burst_worker:
        setup_django(os.environ["OPENAI_BASE_URL"], migrate=False)
        burst_worker()
        return
    if args.burst:
        from django.conf import settings

        slow_url, slow_server = start_model_server(latency=1.0)
        setup_django(slow_url)
        workers = settings.Q_CLUSTER["workers"]
        seconds = concurrent(args.burst, workers)
        bare = concurrent_baseline(slow_url, args.burst)
        slow_server.terminate()
        print(
            f"{args.burst} tasks started at once, model 1 s per call, 4 calls each "
            f"(physical limit 4 s):\n"
            f"  AI Workforce, {workers} worker processes:    {seconds:5.2f} s\n"
            f"  bare openai SDK on threads, no database: {bare:5.2f} s"
        )
        return

    base_url, server = start_model_server()
    setup_django(base_url)
    measure(base_url, 5)  # warm up both paths (connections, imports, prepared statements)
    base, mine, queries = measure(base_url, args.tasks)
    server.terminate()

    base_wall, base_cpu = _median(base, 0), _median(base, 1)
    our_wall, our_cpu = _median(mine["merged"], 0), _median(mine["merged"], 1)
    print(
        f"loop overhead over {args.tasks} tasks x {TOOL_CALLS_PER_TASK + 1} steps (zero-latency model):"
    )
    print(
        f"  baseline (bare openai SDK, no database): {base_wall:7.2f} ms wall, {base_cpu:6.2f} ms CPU per step"
    )
    print(
        f"  AI Workforce (durable, audited):         {our_wall:7.2f} ms wall, {our_cpu:6.2f} ms CPU per step"
    )
    print(
        f"  database statements per step:            {queries['merged']:7.1f}  (commits included)"
    )
    print(
        f"  ratio to baseline:                       {our_wall / base_wall:7.2f}x wall, {our_cpu / base_cpu:5.2f}x CPU (target <= 2x)"
    )

    print("what merging statements saves, same run, per step:")
    for name, label in VARIANTS.items():
        wall, cpu = _median(mine[name], 0), _median(mine[name], 1)
        print(
            f"  {label:<48} {wall:6.2f} ms wall, {cpu:5.2f} ms CPU, {queries[name]:4.1f} statements"
        )

    if args.concurrent:
        import subprocess

        # Its own process: the model there takes 1 s per call.
        subprocess.run([sys.executable, __file__, "--burst", str(args.concurrent)], check=True)


if __name__ == "__main__":
    main()
