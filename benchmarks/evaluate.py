"""Benchmark: `evaluate` with 50 golden tasks at concurrency 10 against the test endpoint.

    ./workforce bench evaluate [--cases 50] [--concurrency 10] [--latency 0.0]

Each case is a real evaluation task through the loop: one proposed `send_email`, then the
final answer (two model calls), against the fake OpenAI-compatible server in a separate
process (`--latency` seconds per model call). Prints the wall time of the whole evaluation,
next to the same cases one at a time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.databases import bench_database_url
from benchmarks.loop_overhead import setup_django


def _script(body: dict):
    from tests.fakes.openai_server import reply

    if any(message["role"] == "tool" for message in body["messages"]):
        return reply("Refunded the order.", prompt_tokens=300, completion_tokens=8)
    email = {"to": ["ann@example.com"], "subject": "Your refund", "body": "Refunded."}
    return reply(tool_calls=[("send_email", email)], prompt_tokens=250, completion_tokens=30)


def _serve(latency: float, port_queue) -> None:
    from tests.fakes.openai_server import FakeOpenAIServer, delay, dynamic

    server = FakeOpenAIServer().start()
    server.enqueue(dynamic((lambda body: delay(latency, _script(body))) if latency else _script))
    port_queue.put(server.base_url)
    while True:
        time.sleep(3600)


def _employee(cases: int):
    from employees.models import Employee, EmployeeStatus, Team, ToolGrant, ToolPolicy
    from evaluations.models import GoldenTask

    team, _ = Team.objects.get_or_create(name="Bench evaluations")
    employee, _ = Employee.objects.get_or_create(
        handle="bench-evaluate",
        defaults={
            "name": "Bench Evaluate",
            "team": team,
            "role_title": "Support",
            "job_description": "Answers.",
            "status": EmployeeStatus.ACTIVE,
        },
    )
    ToolGrant.objects.get_or_create(
        employee=employee,
        tool_name="send_email",
        defaults={
            "scope": {"allowed_domains": ["example.com"]},
            "policy": ToolPolicy.NEEDS_APPROVAL,
        },
    )
    GoldenTask.objects.filter(employee=employee).delete()
    GoldenTask.objects.bulk_create(
        GoldenTask(
            employee=employee,
            title=f"Refund {n}",
            input=f"Refund order A-{1000 + n} for ann@example.com.",
            expectations={
                "calls": [{"tool": "send_email", "arguments": {"to": ["ann@example.com"]}}],
                "answer_contains": ["refunded"],
                "max_steps": 2,
            },
        )
        for n in range(cases)
    )
    return employee


def main(argv: list[str] | None = None) -> None:
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per model call")
    args = parser.parse_args(argv)

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    server = context.Process(target=_serve, args=(args.latency, queue), daemon=True)
    server.start()
    base_url = queue.get(timeout=10)
    os.environ.setdefault("DATABASE_URL", bench_database_url("aiworkforce_bench_evaluate"))
    setup_django(base_url)
    from evaluations.services import evaluation_run

    employee = _employee(args.cases)
    print(f"{args.cases} golden tasks, model latency {args.latency:g} s per call")
    for concurrency in (args.concurrency, 1):
        started = time.perf_counter()
        run = evaluation_run(employee=employee, concurrency=concurrency)
        wall = time.perf_counter() - started
        assert run.passed == run.cases, f"{run.passed}/{run.cases} passed"
        print(
            f"  concurrency {concurrency:>2}: {wall:6.2f} s wall "
            f"({1000 * wall / run.cases:.0f} ms per case), {run.passed}/{run.cases} passed"
        )
    server.terminate()


if __name__ == "__main__":
    main()
