"""Benchmark: the live office floor with 1,000 employees and 100,000 tasks.

    ./workforce bench office   (or)
    .venv/bin/python benchmarks/office.py [--employees 1000] [--tasks-per-employee 100]
        [--requests 50] [--reseed]

Seeds, once, on a database of its own (`aiworkforce_bench_office` on the embedded server): 20
teams of 50 employees (mostly active; some shadow, paused with a reason, or drafts; every tenth
works weekdays 09:00-17:00 in one of four time zones), 100 tasks each (mostly done, over the
last 30 days), every task with a run and four steps (model call, tool call, model call, final
answer; a running task's last step is a tool call just started), and one person who manages all
20 teams. An employee's open work: 30% of them are working, the others waiting for approval,
escalated, waiting for delegated work, stopped on a budget, queued, or idle. Seeding is bulk
inserts and writes no audit entries.

Then, in-process with Django's test client (server time only: no network, no browser), as that
manager, with DEBUG off and the deployed middleware and static files storage:

- the htmx refresh, GET /office/ with HX-Request (what every open floor asks every 3 seconds):
  the 1,000 desks' fragment, p50/p95 over --requests requests: the headline figure;
- the same refresh when every desk has changed since the last one (the view's cache of
  rendered desks emptied before each request: every desk rendered through the template);
- the full page; the selector alone (office.selectors.office_floor_for: the statement and
  turning its rows into desks); the statement alone (cursor.execute + fetchall);
- the SQL statements per refresh, for the manager of 20 teams (1,000 desks) and for a person
  of one team (50 desks): the count must be the same (one for the floor, whatever its size);
- EXPLAIN ANALYZE of the statement: its execution time inside PostgreSQL;
- then the refresh and the statement again with --history (900) more done tasks per employee
  (1,000,000 tasks), inserted in a transaction that is rolled back: a long history must not
  slow the floor down (the planner then walks the (employee, status) index).

Target: refresh p95 <= 150 ms at 1,000 desks; statements per refresh constant.
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

DATABASE = "aiworkforce_bench_office"
MANAGER = "office-bench-manager"  # the seeding marker: the teams and employees come with it
ONE_TEAM = "office-bench-viewer"  # a person of one team only
TEAMS = 20
CHUNK = 5000
HTMX = {"HX-Request": "true"}
TIME_ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]
# What an employee's open work is, by its number modulo 10 (the rest of its tasks are done).
OPEN_WORK = {
    0: ["running"],
    1: ["running", "queued"],
    2: ["running", "waiting_approval"],
    3: ["waiting_approval"],
    4: ["waiting_escalation"],
    5: ["waiting_children"],
    6: ["budget_exhausted"],
    7: ["queued", "queued"],
    8: ["waiting_hours"],  # the employees with working hours
    9: [],
}


def drop_database() -> None:
    """Start the bench database afresh (--reseed): drop it from the embedded server."""
    import psycopg

    from aiworkforce import embedded_db

    socket_dir = embedded_db.ensure_running()
    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def setup_django() -> str:
    """Deployed settings (DEBUG off) on a database of our own; returns the static files dir."""
    import django

    os.environ["OPENAI_API_KEY"] = ""
    os.environ["LOG_LEVEL"] = "WARNING"
    # Measured as deployed: DEBUG off (Django's debug cursor wrapper costs CPU per query).
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["ALLOWED_HOSTS"] = "testserver"
    # The manifest storage needs collectstatic, as a deployment runs it; ours goes in a temp dir.
    static_root = tempfile.mkdtemp(prefix="aiworkforce-bench-static-")
    os.environ["STATIC_ROOT"] = static_root
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = bench_database_url(DATABASE)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    return static_root


# --- seeding ---------------------------------------------------------------------------------


def seed(employees: int, tasks_per_employee: int):
    """The manager, one-team viewer, teams, employees, tasks, runs and steps (once)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from employees.models import Team, TeamMembership, TeamRole

    user_model = get_user_model()
    if user_model.objects.filter(username=ONE_TEAM).exists():
        print(f"seeding: already seeded (marker: user {ONE_TEAM})")
    elif user_model.objects.filter(username=MANAGER).exists():
        sys.exit(f"an earlier seeding of {DATABASE} was interrupted: run again with --reseed")
    else:
        started = time.perf_counter()
        _seed_people(employees)
        print(f"seeded {employees:,} employees in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        _seed_tasks(tasks_per_employee)
        _seed_steps()
        # Last: the marker of a complete seeding.
        viewer = user_model.objects.create_user(ONE_TEAM, f"{ONE_TEAM}@example.com")
        TeamMembership.objects.create(
            team=Team.objects.get(name="Office bench 00"), user=viewer, role=TeamRole.VIEWER
        )
        print(f"seeded tasks, runs and steps in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) tasks_task, tasks_step, tasks_run, employees_employee")
        cursor.execute("SELECT count(*) FROM tasks_task")
        task_count = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM tasks_step")
        step_count = cursor.fetchone()[0]
    print(
        f"vacuumed and analysed in {time.perf_counter() - started:.1f} s "
        f"({task_count:,} tasks, {step_count:,} steps)"
    )
    return user_model.objects.get(username=MANAGER), user_model.objects.get(username=ONE_TEAM)


def _status(n: int) -> str:
    from employees.models import EmployeeStatus

    if n % 25 == 24:
        return EmployeeStatus.PAUSED
    if n % 33 == 32:
        return EmployeeStatus.DRAFT
    return EmployeeStatus.SHADOW if n % 12 == 11 else EmployeeStatus.ACTIVE


def _seed_people(employees: int):
    from datetime import time as clock

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from employees.models import (
        Employee,
        EmployeeStatus,
        Team,
        TeamMembership,
        TeamRole,
        WorkingWindow,
    )

    user_model = get_user_model()
    with transaction.atomic():
        manager = user_model.objects.create_user(MANAGER, f"{MANAGER}@example.com")
        teams = Team.objects.bulk_create([Team(name=f"Office bench {n:02d}") for n in range(TEAMS)])
        TeamMembership.objects.bulk_create(
            [TeamMembership(team=t, user=manager, role=TeamRole.MANAGER) for t in teams]
        )

    # Small transactions: each employee gets its own memory partitions (a trigger), and one
    # transaction creating a thousand would run out of lock slots.
    rows: list[Employee] = []
    for first in range(0, employees, 25):
        rows += Employee.objects.bulk_create(
            [
                Employee(
                    name=f"Bench {n:04d}",
                    handle=f"office-bench-{n:04d}",
                    team=teams[n % TEAMS],
                    role_title="Support specialist",
                    job_description="Answers customers (office benchmark).",
                    status=_status(n),
                    status_reason="Error streak: 5 failed tasks in a row."
                    if _status(n) == EmployeeStatus.PAUSED
                    else "",
                    always_on=n % 10 != 8,
                    timezone=TIME_ZONES[n % len(TIME_ZONES)],
                    hired_at=timezone.now(),
                )
                for n in range(first, min(first + 25, employees))
            ]
        )
    WorkingWindow.objects.bulk_create(
        [
            WorkingWindow(employee=e, weekday=day, start=clock(9), end=clock(17))
            for e in rows
            if not e.always_on
            for day in range(5)
        ]
    )
    return manager


def _seed_tasks(per_employee: int) -> None:
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from employees.models import Employee, EmployeeStatus
    from tasks.models import Task, TaskStatus

    now = timezone.now()
    employees = list(Employee.objects.filter(handle__startswith="office-bench-").order_by("handle"))
    batch: list[Task] = []
    with transaction.atomic():
        for n, employee in enumerate(employees):
            open_work = [] if employee.status == EmployeeStatus.DRAFT else OPEN_WORK[n % 10]
            done = per_employee - len(open_work)
            for j in range(per_employee):
                # created_at is auto_now_add (bulk_create sets it): the spread is in started_at.
                created = now - timedelta(minutes=(per_employee - j) * 30 * 24 * 60 / per_employee)
                if j < done:
                    status = (
                        TaskStatus.FAILED
                        if j % 31 == 0
                        else TaskStatus.CANCELLED
                        if j % 97 == 0
                        else TaskStatus.DONE
                    )
                else:
                    status = open_work[j - done]
                batch.append(
                    Task(
                        employee=employee,
                        title=f"Customer request {n}-{j}: where is my order?",
                        input=f"From: customer{n}-{j}@example.com\n\nWhere is my order?",
                        status=status,
                        status_reason=_reason(status),
                        started_at=created,
                        finished_at=created + timedelta(minutes=3)
                        if status in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED)
                        else None,
                    )
                )
                if len(batch) == CHUNK:
                    Task.objects.bulk_create(batch)
                    batch = []
        if batch:
            Task.objects.bulk_create(batch)


def _reason(status: str) -> str:
    return {
        "waiting_approval": "Waiting for approval of send_email.",
        "waiting_escalation": "Escalated: the refund is over the limit.",
        "waiting_children": "Waiting for 1 delegated request.",
        "budget_exhausted": "The task budget of $0.50 is spent.",
        "waiting_hours": "Outside working hours; waits for the next window.",
    }.get(status, "")


def _seed_steps() -> None:
    """One run and four steps per task, in SQL (400,000 rows in seconds, not minutes)."""
    from django.db import connection, transaction

    content = "Dear customer, thank you for your message. " * 30  # a realistic payload size
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks_run (task_id, number, status, worker, started_at, error) "
            "SELECT id, 1, CASE WHEN status = 'running' THEN 'running' ELSE 'finished' END, "
            "'bench', created_at, '' FROM tasks_task"
        )
        cursor.execute(
            """
            INSERT INTO tasks_step
                (task_id, run_id, seq, kind, payload, tokens_in, tokens_out, cost, latency_ms,
                 created_at)
            SELECT r.task_id, r.id, s.seq,
                CASE WHEN s.seq IN (1, 3) THEN 'llm_call'
                     WHEN s.seq = 2 OR r.status = 'running' THEN 'tool_call'
                     ELSE 'final' END,
                CASE WHEN s.seq IN (1, 3) THEN jsonb_build_object(
                        'model', 'gpt-4o-mini',
                        'message', jsonb_build_object('role', 'assistant', 'content', %s::text,
                            'tool_calls', jsonb_build_array(jsonb_build_object(
                                'id', 'call_' || s.seq,
                                'function', jsonb_build_object(
                                    'name', CASE WHEN s.seq = 1 THEN 'recall' ELSE 'send_email' END,
                                    'arguments', '{}')))))
                     WHEN s.seq = 2 OR r.status = 'running' THEN jsonb_build_object(
                        'call_id', 'call_' || s.seq,
                        'name', CASE WHEN s.seq = 2 THEN 'recall' ELSE 'send_email' END,
                        'status', CASE WHEN s.seq = 2 THEN 'ok' ELSE 'started' END,
                        'arguments', '{}'::jsonb, 'result', '{}'::jsonb)
                     ELSE jsonb_build_object('content', %s::text) END,
                500, 120, 0.0004, 900, r.started_at + s.seq * interval '20 seconds'
            FROM tasks_run r CROSS JOIN generate_series(1, 4) AS s(seq)
            """,
            [content, content],
        )


# --- measuring -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _timed(fn, requests: int) -> list[float]:
    for _ in range(5):  # warm up: templates, connection, caches
        fn()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _get(client, headers: dict | None = None):
    response = client.get("/office/", secure=True, headers=headers or {})
    assert response.status_code == 200, f"GET /office/: {response.status_code}"
    return response


def statements_per_refresh(client) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _get(client, HTMX)
    return len(captured.captured_queries)


def explain(manager) -> float:
    """PostgreSQL's own execution time of the floor statement, in ms."""
    from django.db import connection

    from employees.selectors import teams_visible_to
    from office.selectors import FLOOR_SQL

    sql, params = teams_visible_to(manager).order_by().values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + FLOOR_SQL.format(visible=sql), params)
        plan = cursor.fetchone()[0]
    plan = plan[0] if isinstance(plan, list) else plan
    return float(plan["Execution Time"])


def with_history(per_employee: int, measure) -> tuple[int, dict]:
    """Run `measure` with `per_employee` more finished tasks per employee (a year of work),
    inserted in a transaction that is rolled back: how the floor copes with a long history."""
    from django.db import connection, transaction

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO tasks_task (employee_id, title, input, source, priority, urgent,
                    status, status_reason, depth, result, tokens_in, tokens_out, cost,
                    reserved_cost, reservation_id, descendants_cost, budget_overrides,
                    lease_owner, created_at, updated_at, finished_at)
                SELECT e.id, 'Older request', 'Where is my order?', 'manual', 20, false, 'done',
                    '', 0, 'Answered.', 0, 0, 0, 0, '', 0, '{}', '', now() - interval '1 year',
                    now() - interval '1 year', now() - interval '1 year'
                FROM employees_employee e CROSS JOIN generate_series(1, %s)
                WHERE e.handle LIKE 'office-bench-%%'
                """,
                [per_employee],
            )
            cursor.execute("ANALYZE tasks_task")  # as autovacuum would after such growth
            cursor.execute("SELECT count(*) FROM tasks_task")
            tasks = cursor.fetchone()[0]
        figures = measure()
        transaction.set_rollback(True)
    return tasks, figures


def _line(label: str, values: list[float], target: float | None = None) -> str:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    text = f"  {label:<50} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
    if target is not None:
        text += f"   (target p95 <= {target:g} ms: {'ok' if p95 <= target else 'MISSED'})"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--employees", type=int, default=1000)
    parser.add_argument("--tasks-per-employee", type=int, default=100)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per figure")
    parser.add_argument(
        "--history",
        type=int,
        default=900,
        help="then again with this many more done tasks per employee (rolled back); 0: skip",
    )
    parser.add_argument("--reseed", action="store_true", help="drop the seeded database first")
    args = parser.parse_args(argv)

    if args.reseed and not os.environ.get("DATABASE_URL"):
        drop_database()
    static_root = setup_django()
    try:
        manager, viewer = seed(args.employees, args.tasks_per_employee)
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        from employees.selectors import teams_visible_to
        from office.selectors import FLOOR_SQL, office_floor_for

        client = Client()
        client.force_login(manager)
        one_team = Client()
        one_team.force_login(viewer)
        floor = office_floor_for(manager, now=timezone.now())
        print(
            f"\nthe floor: {floor.desk_count:,} desks in {len(floor.teams)} teams: {floor.summary}"
        )
        fragment = _get(client, HTMX).content
        print(f"  the refresh fragment is {len(fragment) / 1024:,.0f} KiB of HTML")

        print(f"measuring ({args.requests} requests each, in-process) ...")
        refresh = _timed(lambda: _get(client, HTMX), args.requests)
        from office.views import _rendered_desks

        def cold_refresh():
            _rendered_desks.clear()  # as if every desk had changed since the last refresh
            _get(client, HTMX)

        cold = _timed(cold_refresh, args.requests)
        page = _timed(lambda: _get(client), args.requests)
        selector = _timed(lambda: office_floor_for(manager, now=timezone.now()), args.requests)
        sql, params = teams_visible_to(manager).order_by().values("id").query.sql_with_params()

        def statement() -> None:
            with connection.cursor() as cursor:
                cursor.execute(FLOOR_SQL.format(visible=sql), params)
                cursor.fetchall()

        statement_times = _timed(statement, args.requests)
        many, few = statements_per_refresh(client), statements_per_refresh(one_team)
        executed = explain(manager)
        history = None
        if args.history:
            print(f"measuring again with {args.history} more done tasks per employee ...")
            history = with_history(
                args.history,
                lambda: {
                    "refresh": _timed(lambda: _get(client, HTMX), args.requests),
                    "statement": _timed(statement, args.requests),
                    "explain": explain(manager),
                },
            )
    finally:
        shutil.rmtree(static_root, ignore_errors=True)

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"\noffice benchmark ({floor.desk_count:,} desks, DEBUG off; load average {load} on "
        f"{os.cpu_count()} CPUs: other work on the machine inflates every figure):"
    )
    print(_line("GET /office/ htmx refresh (1,000 desks)", refresh, target=150))
    print(_line("  the same when every desk changed (none cached)", cold))
    print(_line("GET /office/ full page", page))
    print(_line("office_floor_for() (the statement + desks)", selector))
    print(_line("the floor statement alone (execute + fetch)", statement_times))
    print(f"  {'the statement inside PostgreSQL (EXPLAIN ANALYZE)':<50} {executed:7.1f} ms")
    constant = many == few
    print(
        f"  SQL statements per refresh: {many} for 1,000 desks, {few} for 50 desks "
        f"(session, user, the floor)   (target: constant: {'ok' if constant else 'MISSED'})"
    )
    if history is not None:
        tasks, figures = history
        print(f"\n  with a long history ({tasks:,} tasks):")
        print(_line("GET /office/ htmx refresh (1,000 desks)", figures["refresh"], target=150))
        print(_line("the floor statement alone (execute + fetch)", figures["statement"]))
        print(
            f"  {'the statement inside PostgreSQL (EXPLAIN ANALYZE)':<50} "
            f"{figures['explain']:7.1f} ms"
        )


if __name__ == "__main__":
    main()
