"""Benchmark: the manager's dashboard (/) over 1,000,000 tasks and 10,000,000 steps.

    ./workforce bench dashboard   (or)
    .venv/bin/python benchmarks/dashboard.py [--tasks 1000000] [--steps 10000000] [--days 365]
                                             [--requests 30]

Seeds, once, into a database of its own (aiworkforce_bench_dashboard on the embedded server):
100 employees in 10 teams and one person who manages all ten teams (not a superuser: the page
goes through the visibility rules), then --tasks tasks spread evenly over the last --days days
(86 % done, 6 % failed, 3 % cancelled; the rest done too, but in the last two days parked:
waiting for approval, stopped on a budget, waiting for working hours), one run per task and
--steps steps spread over the tasks, an escalation on 2 % of the tasks, an approval request
on 8 % (mostly approved, some rejected, pending for the parked ones) and the budget ledger
(DailySpend) that the tasks' costs add up to. Seeding is set-based SQL (INSERT ... SELECT
over generate_series), not the ORM: 11 M rows in minutes, not hours. A later run reuses the data if it has the same size and was seeded today;
otherwise it empties the benchmark's tables and seeds again.

Then, in-process with Django's test client (server time only: no network, no browser), as that
manager, with DEBUG off and the deployed middleware and static files storage: GET / for the
30-day and the 7-day period (the full page: what needs me, KPIs, charts), the htmx swap of the
figures, and the embeddable KPI cards of one employee; p50/p95 over --requests requests each,
the SQL statements per page and the slowest of them.

Target: the dashboard's p95 <= 150 ms (the slowest of the full pages).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.databases import bench_database_url  # noqa: E402 (needs the sys.path above)

DATABASE = "aiworkforce_bench_dashboard"
MANAGER = "dashboard-bench-manager"  # the seeding marker: its first_name holds the seed's size
TEAMS, EMPLOYEES_PER_TEAM = 10, 10
CHUNK = 100_000  # tasks per INSERT ... SELECT (and their runs and steps)
HTMX = {"HX-Request": "true"}
GOAL_MS = 150


# --- setup -----------------------------------------------------------------------------------


def setup_django() -> str:
    """Deployed settings (DEBUG off) on a database of our own; returns the static files dir."""
    import django

    os.environ["OPENAI_API_KEY"] = ""
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DEBUG"] = "false"  # as deployed: no debug cursor wrapper
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["ALLOWED_HOSTS"] = "testserver"
    static_root = tempfile.mkdtemp(prefix="aiworkforce-bench-static-")
    os.environ["STATIC_ROOT"] = static_root
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = bench_database_url(DATABASE)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    return static_root


# --- seeding -----------------------------------------------------------------------------------


def insert_select(
    model, expressions: dict[str, str], source: str, params: dict | None = None
) -> int:
    """INSERT INTO model's table SELECT expressions FROM source (named %(param)s placeholders).

    Every column is written: the ones named in `expressions` as that SQL, the others as their
    field's default (NULL when nullable and without one, '' for blank text), so a column added to the model later
    gets its default instead of breaking the seeding.
    """
    from django.db import connection

    columns, values, named = [], [], dict(params or {})
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(f'"{field.column}"')
        if field.column in expressions:
            values.append(expressions[field.column])
        elif field.has_default():
            values.append(f"%(default_{field.column})s")
            named[f"default_{field.column}"] = field.get_db_prep_save(
                field.get_default(), connection
            )
        elif field.null:
            values.append("NULL")
        elif field.blank and field.empty_strings_allowed:
            values.append("''")
        else:
            raise ValueError(f"seeding {model.__name__}: no value for {field.column}")
    unknown = set(expressions) - {field.column for field in model._meta.concrete_fields}
    if unknown:
        raise ValueError(f"seeding {model.__name__}: no such columns {sorted(unknown)}")
    sql = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) "  # noqa: S608 - our names
        f"SELECT {', '.join(values)} FROM {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, named)
        return cursor.rowcount


# The n-th task's status, from a hash of n: the same mix in every chunk and on every day. Only
# the last two days' tasks are still parked: older work has long been decided and finished.
STATUS_SQL = """CASE
    WHEN (g * 7919) %% 100 < 86 THEN 'done'
    WHEN (g * 7919) %% 100 < 92 THEN 'failed'
    WHEN (g * 7919) %% 100 < 95 THEN 'cancelled'
    WHEN created < %(now)s::timestamptz - interval '2 days' THEN 'done'
    WHEN (g * 7919) %% 100 < 97 THEN 'waiting_approval'
    WHEN (g * 7919) %% 100 < 98 THEN 'budget_exhausted'
    ELSE 'waiting_hours' END"""
SEED_VERSION = 2  # changes to the seeding above make a later run seed again


def _seed_tasks(employee_ids: list[int], tasks: int, days: int, started_at) -> None:
    from tasks.models import Task

    for first in range(1, tasks + 1, CHUNK):
        last = min(first + CHUNK - 1, tasks)
        # Task g arrived (tasks - g) / tasks of the way back from now; the finished ones took
        # 1 to 240 minutes (a hash of g again), the parked ones have not finished.
        source = (
            "(SELECT g, status, created, CASE WHEN status IN ('done', 'failed', 'cancelled') "  # noqa: S608 - constants
            "THEN created + ((g * 104729) %% 240 + 1) * interval '1 minute' END AS finished "
            "FROM (SELECT g, created, " + STATUS_SQL + " AS status FROM ("
            "SELECT g, %(now)s::timestamptz - (%(tasks)s - g)::float8 / %(tasks)s "
            "* %(days)s * interval '1 day' AS created "
            "FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g) s0) s1) s"
        )
        insert_select(
            Task,
            {
                "employee_id": "(%(employees)s::bigint[])[1 + g %% %(count)s]",
                "title": "'Seeded request ' || g",
                "input": "'From: customer' || g || '@example.com. How do I reset my password?'",
                "status": "status",
                "status_reason": "CASE status WHEN 'failed' THEN 'The mail server refused "
                "the message.' WHEN 'budget_exhausted' THEN 'The task budget of $0.50 is "
                "spent.' ELSE '' END",
                "tokens_in": "(g %% 50) * 40",
                "tokens_out": "(g %% 50) * 10",
                "cost": "(g %% 50) * 0.0004",
                "created_at": "created",
                "updated_at": "COALESCE(finished, created)",
                "started_at": "created",
                "finished_at": "finished",
            },
            source,
            {
                "employees": employee_ids,
                "count": len(employee_ids),
                "now": started_at,
                "days": days,
                "tasks": tasks,
                "first": first,
                "last": last,
            },
        )


def _seed_runs_and_steps(first_task: int, steps: int, tasks: int) -> None:
    """One run per task, and `steps` steps in all: tasks x floor + one more for the first few."""
    from tasks.models import Run, Step

    per_task, extra = divmod(steps, tasks)
    last_task = first_task + tasks - 1
    for lo in range(first_task, last_task + 1, CHUNK):
        hi = min(lo + CHUNK - 1, last_task)
        insert_select(
            Run,
            {
                "task_id": "t.id",
                "number": "1",
                "status": "CASE WHEN t.finished_at IS NULL THEN 'parked' ELSE 'finished' END",
                "worker": "'bench'",
                "started_at": "t.created_at",
                "finished_at": "t.finished_at",
            },
            "tasks_task t WHERE t.id BETWEEN %(lo)s AND %(hi)s",
            {"lo": lo, "hi": hi},
        )
        insert_select(
            Step,
            {
                "task_id": "r.task_id",
                "run_id": "r.id",
                "seq": "s",
                "kind": "CASE WHEN s = 1 THEN 'llm_call' WHEN s %% 2 = 0 THEN 'tool_call' "
                "ELSE 'llm_call' END",
                "tokens_in": "CASE WHEN s %% 2 = 1 THEN 400 ELSE 0 END",
                "tokens_out": "CASE WHEN s %% 2 = 1 THEN 100 ELSE 0 END",
                "cost": "CASE WHEN s %% 2 = 1 THEN 0.0004 ELSE 0 END",
                "latency_ms": "200 + s * 10",
                "created_at": "r.started_at + s * interval '1 second'",
            },
            "tasks_run r CROSS JOIN LATERAL generate_series(1, %(per_task)s + "
            "CASE WHEN r.task_id - %(first)s < %(extra)s THEN 1 ELSE 0 END) AS s "
            "WHERE r.task_id BETWEEN %(lo)s AND %(hi)s",
            {"per_task": per_task, "first": first_task, "extra": extra, "lo": lo, "hi": hi},
        )


def _seed_people_work(manager) -> None:
    """Escalations, approval requests and the budget ledger, from the tasks."""
    from approvals.models import ApprovalRequest, Escalation
    from tasks.models import DailySpend

    insert_select(
        Escalation,
        {
            "task_id": "t.id",
            "employee_id": "t.employee_id",
            "summary": "'The customer asks for a refund above my limit.'",
            "status": "CASE WHEN t.finished_at IS NULL THEN 'open' ELSE 'answered' END",
            "answer": "CASE WHEN t.finished_at IS NULL THEN '' ELSE 'Refund it.' END",
            "answered_at": "t.finished_at",
            "created_at": "t.created_at + interval '1 minute'",
        },
        "tasks_task t WHERE t.id %% 50 = 7",
    )
    insert_select(
        ApprovalRequest,
        {
            "task_id": "t.id",
            "employee_id": "t.employee_id",
            "kind": "'tool_call'",
            "tool_name": "'send_email'",
            "reason": "'The SOP says to reply to the customer.'",
            "status": "CASE WHEN t.status = 'waiting_approval' THEN 'pending' "
            "WHEN (t.id / 25) %% 10 = 0 THEN 'rejected' ELSE 'approved' END",
            "decided_by_id": "CASE WHEN t.status = 'waiting_approval' THEN NULL ELSE %(manager)s END",
            "decided_at": "CASE WHEN t.status = 'waiting_approval' THEN NULL "
            "ELSE t.created_at + ((t.id %% 90) + 1) * interval '1 minute' END",
            "created_at": "t.created_at",
        },
        "tasks_task t WHERE t.id %% 25 IN (3, 4) OR t.status = 'waiting_approval'",
        {"manager": manager.pk},
    )
    insert_select(
        DailySpend,
        {
            "employee_id": "employee_id",
            "day": "day",
            "spent": "spent",
        },
        "(SELECT employee_id, (COALESCE(finished_at, created_at) AT TIME ZONE 'UTC')::date "
        "AS day, SUM(cost) AS spent FROM tasks_task GROUP BY 1, 2) d",
    )


def seed(tasks: int, steps: int, days: int):
    """The manager, teams and employees, and the work; reused when of this size and from today."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from employees.models import Employee, EmployeeStatus, Team, TeamMembership, TeamRole

    size = f"v{SEED_VERSION}/{tasks}/{steps}/{days}/{timezone.localdate().isoformat()}"
    user_model = get_user_model()
    manager = user_model.objects.filter(username=MANAGER).first()
    if manager is not None and manager.first_name == size:
        print(f"seeding: already seeded ({tasks:,} tasks, {steps:,} steps over {days} days)")
        return manager
    started = time.perf_counter()
    print(f"seeding {tasks:,} tasks and {steps:,} steps over {days} days ...")
    with connection.cursor() as cursor:
        # Our own database: empty it of any earlier seed, quickly.
        cursor.execute(
            "TRUNCATE tasks_task, tasks_run, tasks_step, tasks_dailyspend, "
            "approvals_approvalrequest, approvals_escalation RESTART IDENTITY CASCADE"
        )
        cursor.execute("SET synchronous_commit = off")
    with transaction.atomic():
        if manager is None:
            manager = user_model.objects.create_user(MANAGER, f"{MANAGER}@example.com")
            teams = Team.objects.bulk_create(
                [Team(name=f"Dashboard bench {n:02d}") for n in range(1, TEAMS + 1)]
            )
            TeamMembership.objects.bulk_create(
                [TeamMembership(team=t, user=manager, role=TeamRole.MANAGER) for t in teams]
            )
            Employee.objects.bulk_create(
                [
                    Employee(
                        name=f"Bench {n:03d}",
                        handle=f"dash-bench-{n:03d}",
                        team=teams[(n - 1) // EMPLOYEES_PER_TEAM],
                        role_title="Support specialist",
                        job_description="Answers customers (dashboard benchmark).",
                        status=EmployeeStatus.PAUSED if n % 40 == 0 else EmployeeStatus.ACTIVE,
                        status_reason="Error streak: 5 failed tasks in a row."
                        if n % 40 == 0
                        else "",
                        status_changed_at=timezone.now() if n % 40 == 0 else None,
                        hired_at=timezone.now(),
                    )
                    for n in range(1, TEAMS * EMPLOYEES_PER_TEAM + 1)
                ]
            )
    employee_ids = list(
        Employee.objects.filter(handle__startswith="dash-bench-")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    now = timezone.now()
    _seed_tasks(employee_ids, tasks, days, now)
    print(f"  tasks in {time.perf_counter() - started:6.1f} s")
    _seed_runs_and_steps(1, steps, tasks)
    print(f"  runs and steps in {time.perf_counter() - started:6.1f} s")
    _seed_people_work(manager)
    print(f"  escalations, approvals, spend in {time.perf_counter() - started:6.1f} s")
    with connection.cursor() as cursor:
        # A settled database, as a deployed one is: statistics and visibility map current.
        cursor.execute(
            "VACUUM (ANALYZE) tasks_task, tasks_run, tasks_step, tasks_dailyspend, "
            "approvals_approvalrequest, approvals_escalation"
        )
    manager.first_name = size
    manager.save(update_fields=["first_name"])
    print(f"seeded in {time.perf_counter() - started:.1f} s")
    return manager


# --- measuring -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _get(client, url: str, headers: dict | None = None):
    response = client.get(url, secure=True, headers=headers or {})
    assert response.status_code == 200, f"GET {url}: {response.status_code}"
    return response


def measure(client, url: str, requests: int, headers: dict | None = None) -> tuple[list, list]:
    """Milliseconds per GET, and the statements of one of them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):  # warm up: templates, connection, caches
        _get(client, url, headers)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        _get(client, url, headers)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        _get(client, url, headers)
    return times, captured.captured_queries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks to seed")
    parser.add_argument("--steps", type=int, default=10_000_000, help="steps to seed")
    parser.add_argument("--days", type=int, default=365, help="days the tasks are spread over")
    parser.add_argument("--requests", type=int, default=30, help="GETs per page measured")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.steps < 0 or args.days < 1:
        parser.error("--tasks and --days must be at least 1, --steps at least 0")

    static_root = setup_django()
    try:
        manager = seed(args.tasks, args.steps, args.days)
        from django.test import Client

        from tasks.models import Step, Task

        client = Client()
        client.force_login(manager)
        tasks, steps = Task.objects.count(), Step.objects.count()
        cases = [
            ("GET /?period=30d (full page)", "/?period=30d", None),
            ("GET /?period=7d (full page)", "/?period=7d", None),
            ("GET /?period=30d (htmx swap of the figures)", "/?period=30d", HTMX),
            ("GET /?period=today (full page)", "/?period=today", None),
            (
                "GET /kpis/?period=30d&employee=… (embed)",
                "/kpis/?period=30d&employee=dash-bench-001",
                None,
            ),
        ]
        print(f"\nmeasuring ({args.requests} requests each, in-process, DEBUG off) ...")
        results = [
            (label, *measure(client, url, args.requests, headers)) for label, url, headers in cases
        ]
    finally:
        shutil.rmtree(static_root, ignore_errors=True)

    print(f"\ndashboard benchmark ({tasks:,} tasks over {args.days} days, {steps:,} steps):")
    for label, times, queries in results:
        slowest = max(float(q["time"]) for q in queries) * 1000
        print(
            f"  {label:<46} p50 {percentile(times, 50):6.1f} ms   p95 {percentile(times, 95):6.1f} ms"
            f"   {len(queries):2} statements, slowest {slowest:4.0f} ms"
        )
    label, times, queries = max(results[:2], key=lambda r: percentile(r[1], 95))
    slowest = max(queries, key=lambda q: float(q["time"]))
    sql = slowest["sql"]
    print(
        f"  slowest statement of {label} ({float(slowest['time']) * 1000:.0f} ms): {sql[:400]} ..."
    )
    p95 = percentile(times, 95)
    verdict = "ok" if p95 <= GOAL_MS else "MISSED"
    print(
        f"\ndashboard: {tasks:,} tasks, {steps:,} steps, p95 {p95:.1f} ms "
        f"(goal ≤ {GOAL_MS} ms: {verdict})"
    )


if __name__ == "__main__":
    main()
