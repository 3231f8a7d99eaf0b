"""Benchmark: one pass of the anomaly rules over 1,000 employees and 1,000,000 tasks.

    ./workforce bench anomalies   (or)
    .venv/bin/python benchmarks/anomalies.py [--employees 1000] [--tasks 1000000] [--days 30]
                                             [--passes 20]

Seeds, once, into a database of its own (aiworkforce_bench_anomalies on the embedded server):
--employees active employees in teams of 50 and one manager, then --tasks tasks spread evenly
over the last --days days (90 % done, 5 % failed, 3 % cancelled, 2 % escalated: those
of the last two days still waiting, older ones done), one run per
task with three steps (a model call that cost money, a tool call of one of five tools with its
outcome, a final answer), an approval request on 8 % of the tasks (one in ten rejected).
On top, a few employees in trouble, so that each rule has something to find: 10 with a spend
spike in the last hour, 5 calling one tool 80 times, 5 whose last five tasks failed, 5 woken
twelve times by the same text, 5 whose last three proposals were rejected. Seeding is set-based
SQL (INSERT ... SELECT over generate_series); a later run reuses the data if it has the same
size, and evaluates the rules as at the moment it was seeded (they read the last hour).

Then, in-process with DEBUG off: the rules' figures (anomalies.figures.anomaly_triggers, the
five statements every pass runs) --passes times, p50/p95; the same with every rule's floor at
$0 (the worst case: every employee's trailing week of hourly spend is read); and one full pass
(anomalies_evaluate: figures, pauses, audit entries, mails to the locmem backend) rolled back.

Target: a pass under 1 s (p95).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.databases import bench_database_url  # noqa: E402 (needs the sys.path above)

DATABASE = "aiworkforce_bench_anomalies"
MANAGER = "anomalies-bench-manager"  # the seeding marker: its first_name holds the seed's size
PER_TEAM = 50
CHUNK = 100_000
GOAL_MS = 1000
SEED_VERSION = 2
TOOLS = ["http_request", "send_email", "create_task", "web_search", "read_file"]


def setup_django() -> None:
    import django

    os.environ["OPENAI_API_KEY"] = ""
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = bench_database_url(DATABASE)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _execute(sql: str, params: dict | None = None) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or {})
        return cursor.rowcount


# The n-th task's status from a hash of n that does not repeat with the employee (task n goes
# to employee n mod --employees); only the last two days' escalations are still open.
STATUS_SQL = """CASE WHEN (g * 2654435761 %% 1000003) %% 100 < 90 THEN 'done'
    WHEN (g * 2654435761 %% 1000003) %% 100 < 95 THEN 'failed'
    WHEN (g * 2654435761 %% 1000003) %% 100 < 98 THEN 'cancelled'
    WHEN created < %(now)s::timestamptz - interval '2 days' THEN 'done'
    ELSE 'waiting_escalation' END"""


def _seed_work(employee_ids: list[int], tasks: int, days: int, now, manager_id: int) -> None:
    from approvals.models import ApprovalRequest
    from benchmarks.dashboard import insert_select
    from tasks.models import Run, Step, Task

    for first in range(1, tasks + 1, CHUNK):
        last = min(first + CHUNK - 1, tasks)
        source = (
            "(SELECT g, created, status, CASE WHEN status <> 'waiting_escalation' "  # noqa: S608 - constants
            "THEN created + ((g * 104729) %% 30 + 1) * interval '1 minute' END AS finished "
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
                "input": "'Customer ' || g || ' asks how to reset a password.'",
                "status": "status",
                "cost": "0.0004",
                "created_at": "created",
                "updated_at": "COALESCE(finished, created)",
                "started_at": "created",
                "finished_at": "finished",
            },
            source,
            {
                "employees": employee_ids,
                "count": len(employee_ids),
                "now": now,
                "days": days,
                "tasks": tasks,
                "first": first,
                "last": last,
            },
        )
    # Fresh statistics first: after a TRUNCATE the planner takes the tasks table for empty,
    # and the foreign-key checks of the rows below would each scan it.
    _execute("ANALYZE tasks_task")
    insert_select(
        Run,
        {
            "task_id": "t.id",
            "number": "1",
            "status": "'finished'",
            "worker": "'bench'",
            "started_at": "t.created_at",
            "finished_at": "t.finished_at",
        },
        "tasks_task t",
    )
    _execute("ANALYZE tasks_run")
    insert_select(
        Step,
        {
            "task_id": "r.task_id",
            "run_id": "r.id",
            "seq": "s",
            "kind": "CASE s WHEN 1 THEN 'llm_call' WHEN 2 THEN 'tool_call' ELSE 'final' END",
            "payload": "CASE s WHEN 2 THEN jsonb_build_object('call_id', 'c' || r.task_id, "
            "'name', (%(tools)s::text[])[1 + r.task_id %% 5], 'status', 'ok', 'result', "
            "'{}'::jsonb) ELSE '{}'::jsonb END",
            "tokens_in": "CASE s WHEN 1 THEN 1000 ELSE 0 END",
            "cost": "CASE s WHEN 1 THEN 0.0004 ELSE 0 END",
            "created_at": "r.started_at + s * interval '5 seconds'",
        },
        "tasks_run r CROSS JOIN generate_series(1, 3) AS s",
        {"tools": TOOLS},
    )
    insert_select(
        ApprovalRequest,
        {
            "task_id": "t.id",
            "employee_id": "t.employee_id",
            "kind": "'tool_call'",
            "tool_name": "'send_email'",
            "reason": "'The SOP says to reply to the customer.'",
            "status": "CASE WHEN (t.id / 25) %% 10 = 0 THEN 'rejected' ELSE 'approved' END",
            "decided_by_id": "%(manager)s",
            "decided_at": "t.created_at + interval '2 minutes'",
            "created_at": "t.created_at",
        },
        "tasks_task t WHERE t.id %% 25 IN (3, 4)",
        {"manager": manager_id},
    )


def _seed_trouble(ids: list[int], now) -> None:
    """A few employees in trouble: each rule finds some."""
    from benchmarks.dashboard import insert_select
    from tasks.models import Step, Task

    spike, surge, errors, wake, rejected = ids[0:10], ids[10:15], ids[15:20], ids[20:25], ids[25:30]
    latest_runs = (
        "(SELECT DISTINCT ON (t.employee_id) t.id AS task_id, r.id AS run_id FROM tasks_task t "
        "JOIN tasks_run r ON r.task_id = t.id WHERE t.employee_id = ANY(%(ids)s) "
        "ORDER BY t.employee_id, t.created_at DESC) t CROSS JOIN generate_series(1, %(n)s) n"
    )
    step = {"task_id": "t.task_id", "run_id": "t.run_id"}
    # $1.50 in the last quarter hour on each one's latest task (seq 100+ is free).
    insert_select(
        Step,
        {
            **step,
            "seq": "100 + n",
            "kind": "'llm_call'",
            "cost": "0.5",
            "created_at": "%(now)s::timestamptz - n * interval '5 minutes'",
        },
        latest_runs,
        {"ids": spike, "n": 3, "now": now},
    )
    insert_select(
        Step,
        {
            **step,
            "seq": "200 + n",
            "kind": "'tool_call'",
            "payload": "jsonb_build_object('call_id', 'loop' || n, 'name', 'http_request', "
            "'status', 'ok')",
            "created_at": "%(now)s::timestamptz - n * interval '30 seconds'",
        },
        latest_runs,
        {"ids": surge, "n": 80, "now": now},
    )
    _execute(
        "UPDATE tasks_task SET status = 'failed' WHERE id IN (SELECT id FROM (SELECT id, "
        "row_number() OVER (PARTITION BY employee_id ORDER BY finished_at DESC) AS n "
        "FROM tasks_task WHERE employee_id = ANY(%(ids)s) AND finished_at IS NOT NULL "
        "AND status IN ('done', 'failed')) x WHERE n <= 5)",
        {"ids": errors},
    )
    insert_select(
        Task,
        {
            "employee_id": "e",
            "title": "'Webhook event'",
            "input": "'Order 17 updated'",
            "source": "'webhook'",
            "status": "'queued'",
            "created_at": "%(now)s::timestamptz - n * interval '40 seconds'",
            "updated_at": "%(now)s::timestamptz",
        },
        "unnest(%(ids)s::bigint[]) e CROSS JOIN generate_series(1, 12) n",
        {"ids": wake, "now": now},
    )
    _execute(
        "UPDATE approvals_approvalrequest SET status = 'rejected' WHERE id IN (SELECT id FROM "
        "(SELECT id, row_number() OVER (PARTITION BY employee_id ORDER BY decided_at DESC) AS n "
        "FROM approvals_approvalrequest WHERE employee_id = ANY(%(ids)s)) x WHERE n <= 3)",
        {"ids": rejected},
    )


def seed(employees: int, tasks: int, days: int):
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from employees.models import Employee, EmployeeStatus, Team, TeamMembership, TeamRole

    size = f"v{SEED_VERSION}/{employees}/{tasks}/{days}"
    user_model = get_user_model()
    manager = user_model.objects.filter(username=MANAGER).first()
    if manager is not None and manager.first_name == size:
        print(f"seeding: already seeded ({employees:,} employees, {tasks:,} tasks)")
        return manager.last_login  # the seed's "now": the passes look at the data from there
    now = timezone.now()
    started = time.perf_counter()
    print(f"seeding {employees:,} employees and {tasks:,} tasks over {days} days ...")
    _execute(
        "TRUNCATE tasks_task, tasks_run, tasks_step, approvals_approvalrequest, "
        "approvals_escalation, anomalies_employeeruleoverride "
        "RESTART IDENTITY CASCADE"
    )
    _execute("SET synchronous_commit = off")
    # Teams and employees are kept from an earlier seed (each has memory partitions of its
    # own, made and dropped by triggers: churning a thousand is slow); the missing ones are
    # added, in batches of their own transactions so as not to run out of lock slots.
    if manager is None:
        manager = user_model.objects.create_user(MANAGER, f"{MANAGER}@example.com")
    teams = []
    for n in range(math.ceil(employees / PER_TEAM)):
        team, created = Team.objects.get_or_create(name=f"Anomalies bench {n:03d}")
        if created:
            TeamMembership.objects.create(team=team, user=manager, role=TeamRole.MANAGER)
        teams.append(team)
    existing = set(
        Employee.objects.filter(handle__startswith="anomaly-bench-").values_list(
            "handle", flat=True
        )
    )
    missing = [n for n in range(employees) if f"anomaly-bench-{n:04d}" not in existing]
    for lo in range(0, len(missing), 50):
        with transaction.atomic():
            Employee.objects.bulk_create(
                [
                    Employee(
                        name=f"Bench {n:04d}",
                        handle=f"anomaly-bench-{n:04d}",
                        team=teams[n // PER_TEAM],
                        role_title="Support specialist",
                        job_description="Answers customers (anomalies benchmark).",
                    )
                    for n in missing[lo : lo + 50]
                ]
            )
    Employee.objects.filter(handle__startswith="anomaly-bench-").update(
        status=EmployeeStatus.ACTIVE,
        status_reason="",
        status_changed_at=now - timezone.timedelta(days=days + 1),
        hired_at=now - timezone.timedelta(days=days + 1),
    )
    ids = list(
        Employee.objects.filter(handle__startswith="anomaly-bench-")
        .order_by("pk")
        .values_list("pk", flat=True)
    )[:employees]
    _seed_work(ids, tasks, days, now, manager.pk)
    print(f"  tasks, runs, steps, approvals in {time.perf_counter() - started:6.1f} s")
    _seed_trouble(ids, now)
    _execute(
        "VACUUM (ANALYZE) tasks_task, tasks_run, tasks_step, approvals_approvalrequest, "
        "employees_employee"
    )
    manager.first_name, manager.last_login = size, now
    manager.save(update_fields=["first_name", "last_login"])
    print(f"seeded in {time.perf_counter() - started:.1f} s")
    return now


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


class _Rollback(Exception):
    pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--employees", type=int, default=1_000)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args(argv)
    if min(args.employees, args.tasks, args.days, args.passes) < 1 or args.employees < 30:
        parser.error("--employees at least 30, the others at least 1")
    setup_django()
    now = seed(args.employees, args.tasks, args.days)

    from django.db import connection, transaction

    from anomalies.figures import anomaly_triggers
    from anomalies.models import RuleSettings
    from anomalies.services import anomalies_evaluate
    from employees.models import Employee
    from tasks.models import Step, Task

    tasks, steps = Task.objects.count(), Step.objects.count()
    employees = Employee.objects.filter(status__in=("active", "shadow")).count()

    def passes() -> tuple[list[float], list]:
        times, triggers = [], []
        for _ in range(args.passes):
            started = time.perf_counter()
            triggers = anomaly_triggers(now=now)
            times.append((time.perf_counter() - started) * 1000)
        return times, triggers

    print(f"\nmeasuring {args.passes} passes (in-process, DEBUG off) ...")
    times, triggers = passes()
    by_rule: dict[str, int] = {}
    for trigger in triggers:
        by_rule[str(trigger.rule.value)] = by_rule.get(str(trigger.rule.value), 0) + 1
    try:
        with transaction.atomic():
            RuleSettings.objects.update(floor=0)
            worst, _ = passes()
            raise _Rollback
    except _Rollback:
        pass
    try:
        with transaction.atomic():
            started = time.perf_counter()
            paused = anomalies_evaluate(now=now)
            full_ms = (time.perf_counter() - started) * 1000
            raise _Rollback
    except _Rollback:
        pass
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_relation_size('step_created_idx'))")
        index_size = cursor.fetchone()[0]

    print(f"\nanomaly rules ({employees:,} employees, {tasks:,} tasks, {steps:,} steps):")
    print(f"  triggers per pass: {by_rule}")
    print(
        f"  figures, default settings      p50 {percentile(times, 50):7.1f} ms   "
        f"p95 {percentile(times, 95):7.1f} ms"
    )
    print(
        f"  figures, every floor at $0     p50 {percentile(worst, 50):7.1f} ms   "
        f"p95 {percentile(worst, 95):7.1f} ms"
    )
    print(f"  one full pass ({paused} pauses, audit, mails; rolled back)  {full_ms:7.1f} ms")
    print(f"  step_created_idx: {index_size}")
    p95 = max(percentile(times, 95), percentile(worst, 95))
    verdict = "ok" if p95 < GOAL_MS else "MISSED"
    print(
        f"\nanomalies: {employees:,} employees, {tasks:,} tasks, pass p95 {p95:.0f} ms "
        f"(goal < 1 s: {verdict})"
    )


if __name__ == "__main__":
    main()
