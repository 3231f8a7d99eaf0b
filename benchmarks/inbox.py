"""Benchmark: the approval inbox with 100,000 pending requests, its search, and approve-click →
action executed.

    ./workforce bench inbox   (or)
    .venv/bin/python benchmarks/inbox.py [--rows 100000] [--requests 50] [--runs 10] [--no-worker]

Seeds, once, 100,000 pending approval requests of 50 employees in 5 teams (their tasks parked in
`waiting_approval`) and one person who is approver of all five teams; a later run tops the
pending requests up to --rows again. Seeding is bulk inserts and writes no audit entries: the
audit chain's trigger serialises every insert, which would make seeding the slow part.

Then, in-process with Django's test client (server time only: no network, no browser), as that
approver, with DEBUG off and the deployed middleware and static files storage:

- GET /inbox/, the first page of 25: p50/p95 over --requests requests (and the htmx fragment,
  and a search);
- the search (htmx fragment, as the search box sends it) for a task title, an employee, words
  of a reason, a tool, and text nothing matches: p50/p95 with the rows each matches, and the
  indexes PostgreSQL's plan for the title search uses (the trigram indexes, not a scan);
- the SQL statements of the inbox for different filters, for a filter matching one row, and
  again after the approvals below: the count must not grow with the rows (no per-row queries);
- POST /inbox/<id>/approve/ of --requests distinct pending requests: p50/p95. Each decision is
  audited, resumes its task and enqueues a django-q2 job (a row in the ORM broker): all counted.

Last, with an idle worker cluster (`manage.py qcluster` in a subprocess, offline engine): a
fresh employee whose SOP sends an email that needs approval. For --runs tasks, the time from the
approve POST until the task is done and its outbox email exists, polled every 10 ms. The ORM
broker is polled every 0.2 s (Q_CLUSTER["poll"]), so about 0.1 s of that is waiting on average;
each click comes after a random pause, so the clicks do not fall in step with the polling.

Targets: inbox first page p95 <= 100 ms, each search p95 <= 50 ms, approve POST p95 <= 50 ms,
statements per page constant, approve → executed <= 1 s.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.databases import bench_database_url  # noqa: E402 (needs the sys.path above)

DATABASE = "aiworkforce_bench_inbox"
APPROVER = "inbox-bench-approver"  # the seeding marker: the teams and employees come with it
TEAMS, EMPLOYEES_PER_TEAM = 5, 10
CHUNK = 2000
HTMX = {"HX-Request": "true"}
ACTION_SOP = [
    {"text": "Read the request."},
    {
        "text": "Reply to the customer.",
        "tool": {
            "name": "send_email",
            "arguments": {
                "to": ["{first_email}"],
                "subject": "We have your request",
                "body": "Thanks for writing in. We are on it and will reply within one hour.",
            },
        },
    },
    {"text": "Summarise the request and the reply."},
]


# --- setup -----------------------------------------------------------------------------------


def setup_django() -> str:
    """Deployed settings (DEBUG off) on a database of our own; returns the static files dir."""
    import django

    os.environ["OPENAI_API_KEY"] = ""  # the offline engine, here and in the worker cluster
    os.environ["LOG_LEVEL"] = "WARNING"
    # Measured as deployed: DEBUG off (Django's debug cursor wrapper costs CPU per query).
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
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


def _proposal(n: int) -> dict:
    """The n-th seeded request: mostly actions of three tools, every tenth a budget raise."""
    from approvals.models import ApprovalKind

    risk = "low" if n % 10 < 5 else "medium" if n % 10 < 8 else "high"
    if n % 10 == 9:
        return {
            "kind": ApprovalKind.BUDGET_RAISE,
            "tool_name": "",
            "arguments": {"scope": "task", "current": "0.50", "requested": "1.00"},
            "reason": "The task budget of $0.50 is spent; $0.62 is needed to finish.",
            "risk": "medium",
        }
    if n % 3 == 0:
        tool, arguments = (
            "http_request",
            {"method": "GET", "url": f"http://localhost:8000/status/{n}"},
        )
    elif n % 3 == 1:
        tool, arguments = (
            "create_task",
            {"employee": "sam-followup", "title": f"Follow up on request {n}"},
        )
    else:
        tool, arguments = (
            "send_email",
            {
                "to": [f"customer{n}@example.com"],
                "subject": f"Re: request {n}",
                "body": "Thanks for writing in. Here is how to reset your password: ...",
            },
        )
    return {
        "kind": ApprovalKind.TOOL_CALL,
        "tool_name": tool,
        "arguments": arguments,
        "reason": f"The customer of request {n} asked for this; the SOP says to do it next.",
        "risk": risk,
    }


def seed(rows: int) -> tuple:
    """The approver, the teams and employees (once), and pending requests up to `rows`."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from approvals.models import ApprovalRequest, ApprovalStatus
    from employees.models import Employee, EmployeeStatus, Team, TeamMembership, TeamRole
    from tasks.models import Task

    user_model = get_user_model()
    approver = user_model.objects.filter(username=APPROVER).first()
    if approver is None:
        with transaction.atomic():
            approver = user_model.objects.create_user(APPROVER, f"{APPROVER}@example.com")
            teams = Team.objects.bulk_create(
                [Team(name=f"Inbox bench {n}") for n in range(1, TEAMS + 1)]
            )
            TeamMembership.objects.bulk_create(
                [TeamMembership(team=t, user=approver, role=TeamRole.APPROVER) for t in teams]
            )
            Employee.objects.bulk_create(
                [
                    Employee(
                        name=f"Bench {n:02d}",
                        handle=f"inbox-bench-{n:02d}",
                        team=teams[(n - 1) // EMPLOYEES_PER_TEAM],
                        role_title="Support specialist",
                        job_description="Answers customers (inbox benchmark).",
                        status=EmployeeStatus.ACTIVE,
                        hired_at=timezone.now(),
                    )
                    for n in range(1, TEAMS * EMPLOYEES_PER_TEAM + 1)
                ]
            )
    teams = list(Team.objects.filter(name__startswith="Inbox bench ").order_by("name"))
    employees = list(Employee.objects.filter(handle__startswith="inbox-bench-").order_by("handle"))
    pending = ApprovalRequest.objects.filter(
        employee__in=employees, status=ApprovalStatus.PENDING
    ).count()
    missing = rows - pending
    if missing <= 0:
        print(f"seeding: already seeded ({pending:,} pending requests; marker: user {APPROVER})")
    else:
        print(f"seeding {missing:,} pending approval requests ({pending:,} there already)")
        started = time.perf_counter()
        serial = Task.objects.filter(employee__in=employees).count()
        with transaction.atomic():
            for made in range(0, missing, CHUNK):
                _insert(employees, range(serial + made, serial + min(made + CHUNK, missing)))
                done = min(made + CHUNK, missing)
                print(
                    f"  {pending + done:6,} / {rows:,} rows  ({time.perf_counter() - started:5.1f} s)"
                )
        seconds = time.perf_counter() - started
        print(f"seeded {missing:,} requests in {seconds:.1f} s ({missing / seconds:,.0f} rows/s)")
    # Deadlines a day ahead on every run: the worker's batch pass would otherwise expire all of
    # them (one audited transaction each) in the first run a day after seeding.
    ApprovalRequest.objects.filter(employee__in=employees, status=ApprovalStatus.PENDING).update(
        deadline=timezone.now() + timedelta(hours=24)
    )
    # Measure a settled database, as a deployed one is: statistics and visibility map current,
    # not autovacuum working through the new rows while the inbox is timed.
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) approvals_approvalrequest, tasks_task")
    print(f"vacuumed and analysed the two tables in {time.perf_counter() - started:.1f} s")
    return approver, teams


def _insert(employees, numbers: range) -> None:
    """Bulk-insert tasks parked in waiting_approval and their pending requests."""
    from datetime import timedelta

    from django.utils import timezone

    from approvals.models import ApprovalRequest
    from tasks.models import Task, TaskStatus

    proposals = [_proposal(n) for n in numbers]
    tasks = Task.objects.bulk_create(
        [
            Task(
                employee=employees[n % len(employees)],
                title=f"Seeded request {n}",
                input=f"From: customer{n}@example.com\n\nHow do I reset my password?",
                status=TaskStatus.WAITING_APPROVAL,
                status_reason=f"Waiting for approval of {p['tool_name'] or 'a budget raise'}.",
            )
            for n, p in zip(numbers, proposals, strict=True)
        ]
    )
    deadline = timezone.now() + timedelta(hours=24)
    ApprovalRequest.objects.bulk_create(
        [
            ApprovalRequest(task=task, employee=task.employee, deadline=deadline, **p)
            for task, p in zip(tasks, proposals, strict=True)
        ]
    )


# --- measuring -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _pending(teams):
    from approvals.models import ApprovalRequest, ApprovalStatus

    return ApprovalRequest.objects.filter(
        employee__team__in=teams, status=ApprovalStatus.PENDING
    ).order_by("-created_at", "-id")


def _get(client, url: str, headers: dict | None = None):
    response = client.get(url, secure=True, headers=headers or {})
    assert response.status_code == 200, f"GET {url}: {response.status_code}"
    return response


def time_inbox(client, teams, requests: int) -> dict[str, list[float]]:
    """Milliseconds per GET: the first page, its htmx fragment, and a search (as htmx sends it)."""
    newest, oldest = _pending(teams).select_related("task")[:1].get(), _pending(teams).last()
    content = _get(client, "/inbox/").content.decode()
    if newest.task.title not in content:
        print(f"  warning: the newest pending request ({newest.task.title!r}) is not on the page")
    search = "/inbox/?q=" + oldest.task.title.replace(" ", "+")
    figures = {}
    for label, url, headers in (
        ("page", "/inbox/", None),
        ("fragment", "/inbox/", HTMX),
        ("search", search, HTMX),
    ):
        for _ in range(5):  # warm up: templates, connection, caches
            _get(client, url, headers)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            _get(client, url, headers)
            times.append((time.perf_counter() - started) * 1000)
        figures[label] = times
    return figures


def search_cases(teams) -> list[tuple[str, str]]:
    """(what is searched, the text typed): the searches a person makes in the inbox."""
    oldest = _pending(teams).select_related("task", "employee").last()
    return [
        ("a task title", oldest.task.title),
        ("an employee", oldest.employee.name),
        ("words of a reason", "customer of request 4242 "),
        ("a tool", "http_request"),
        ("nothing matches", "no-such-words-anywhere"),
    ]


def time_searches(client, approver, teams, requests: int) -> list[tuple[str, str, int, list]]:
    """Per search: (label, text, matching pending requests, milliseconds per GET)."""
    from urllib.parse import urlencode

    from approvals import selectors

    figures = []
    for label, text in search_cases(teams):
        matching = selectors.approvals_pending_for(approver, query=text.strip()).count()
        url = "/inbox/?" + urlencode({"q": text})
        for _ in range(3):
            _get(client, url, HTMX)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            _get(client, url, HTMX)
            times.append((time.perf_counter() - started) * 1000)
        figures.append((label, text, matching, times))
    return figures


def search_plan_indexes(approver, teams) -> list[str]:
    """The indexes in PostgreSQL's plans of the inbox search for one task title."""
    import re

    from approvals import selectors

    title = _pending(teams).select_related("task").last().task.title
    # A narrow search looks its matching ids up first, then reads those rows by id.
    plan = selectors.pending_ids_matching(title).explain()
    plan += selectors.approvals_pending_for(approver, query=title)[:25].explain()
    return sorted(set(re.findall(r"Index (?:Only )?Scan(?: Backward)? (?:using|on) (\w+)", plan)))


def count_queries(client, cases: list[tuple[str, str, int]]) -> list[tuple]:
    """Per inbox URL: (label, matching rows, statements, repeated statements, SQL ms,
    slowest statement ms, slowest statement). SQL times have a resolution of 1 ms."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    rows = []
    for label, url, matching in cases:
        headers = HTMX if "fragment" in label else None
        with CaptureQueriesContext(connection) as captured:
            _get(client, url, headers)
        queries = captured.captured_queries
        slowest = max(queries, key=lambda q: float(q["time"]))
        rows.append(
            (
                label,
                matching,
                len(queries),
                len(queries) - len({q["sql"] for q in queries}),
                sum(float(q["time"]) for q in queries) * 1000,
                float(slowest["time"]) * 1000,
                slowest["sql"],
            )
        )
    return rows


def query_cases(teams, after: str = "") -> list[tuple[str, str, int]]:
    """Inbox URLs with different filters, each with how many pending requests it matches."""
    pending = _pending(teams)
    team, one = teams[1], pending.select_related("task").last()
    search = one.task.title.replace(" ", "+")
    cases = [
        ("first page" + after, "/inbox/", pending.count()),
        ("first page, htmx fragment" + after, "/inbox/", pending.count()),
    ]
    if not after:
        cases += [
            (
                f"team={team.pk}",
                f"/inbox/?team={team.pk}",
                pending.filter(employee__team=team).count(),
            ),
            (
                "risk=high&kind=tool_call",
                "/inbox/?risk=high&kind=tool_call",
                pending.filter(risk="high", kind="tool_call").count(),
            ),
            (
                f"employee={one.employee_id}",
                f"/inbox/?employee={one.employee_id}",
                pending.filter(employee=one.employee_id).count(),
            ),
            (
                f"q={search}",
                f"/inbox/?q={search}",
                pending.filter(task__title__icontains=one.task.title).count(),
            ),
        ]
    return cases


def time_approvals(client, teams, requests: int) -> list[float]:
    """Milliseconds per approve POST, each of a different request from the top of the inbox."""
    ids = list(_pending(teams).values_list("pk", flat=True)[:requests])
    times = []
    for pk in ids:
        started = time.perf_counter()
        response = client.post(f"/inbox/{pk}/approve/", secure=True, headers=HTMX)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, f"approve {pk}: {response.status_code}"
    decided = _pending(teams).filter(pk__in=ids).count()
    assert not decided, f"{decided} of the approve POSTs left their request pending"
    return times


# --- approve → executed, with a real worker cluster ---------------------------------------------


from tests.fakes.cluster import Cluster  # noqa: E402 - after the Django set-up above


def action_employee(team):
    """A fresh employee whose SOP sends one email, which needs approval."""
    from decimal import Decimal

    from aiworkforce.audit import Actor
    from employees import services
    from employees.models import Employee, EmployeeStatus, ToolGrant, ToolPolicy

    employee = services.employee_create(
        employee=Employee(
            name="Latency",
            handle=f"inbox-lat-{secrets.token_hex(4)}",
            team=team,
            role_title="Support triage specialist",
            job_description="Answers each request with one email (inbox benchmark).",
            status=EmployeeStatus.ACTIVE,
            sop=ACTION_SOP,
            max_cost_per_task=Decimal("100"),
            max_cost_per_day=Decimal("10000"),
        ),
        actor=Actor.system("benchmark"),
    )
    ToolGrant.objects.create(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.NEEDS_APPROVAL,
    )
    return employee


def approve_to_executed(
    cluster: Cluster, employee, runs: int, approve: Callable
) -> tuple[list[float], list[float]]:
    """Per task: seconds from creation to waiting for approval, and from approve to executed."""
    from approvals.models import ApprovalRequest, ApprovalStatus
    from tasks.models import OutboxEmail, Task, TaskStatus
    from tasks.services import task_create

    to_parked, to_executed = [], []
    for n in range(runs):
        # Work and clicks arrive at random moments, not in step with the broker's 0.2 s polling.
        time.sleep(secrets.SystemRandom().uniform(0, 0.5))
        started = time.perf_counter()
        task, _ = task_create(
            employee=employee,
            title=f"Latency {n}",
            input=f"From: customer{n}@example.com\n\nHi, how do I reset my password?",
            urgent=True,
        )

        def parked(task=task) -> bool:
            status = Task.objects.filter(pk=task.pk).values_list("status", flat=True).get()
            if status in (TaskStatus.FAILED, TaskStatus.DONE):
                raise RuntimeError(f"task {task.pk} ended {status} before asking for approval")
            return status == TaskStatus.WAITING_APPROVAL

        cluster.wait_for(parked, f"task {task.pk} to ask for approval", every=0.01)
        to_parked.append(time.perf_counter() - started)
        approval = ApprovalRequest.objects.get(task=task, status=ApprovalStatus.PENDING)

        def executed(task=task) -> bool:
            return (
                Task.objects.filter(pk=task.pk, status=TaskStatus.DONE).exists()
                and OutboxEmail.objects.filter(task=task).exists()
            )

        # A person takes a moment to click: without this pause each click would come at the
        # same point of the poll cycle (just after the worker's last poll), always the worst.
        time.sleep(secrets.SystemRandom().uniform(0, 0.5))
        started = time.perf_counter()
        approve(approval)
        cluster.wait_for(executed, f"task {task.pk} to send its email", every=0.01)
        to_executed.append(time.perf_counter() - started)
    return to_parked, to_executed


def with_cluster(runs: int, teams, approve: Callable) -> tuple[int, float, list, list]:
    """Start a cluster, let it run the tasks the approvals resumed, then time `runs` tasks."""
    from django.utils import timezone
    from django_q.models import OrmQ

    from tasks.models import Task, TaskStatus

    def ready_jobs():
        # A job a stopped cluster had taken stays locked until Q_RETRY; it is not waiting now.
        return OrmQ.objects.filter(lock__lt=timezone.now())

    def drained() -> bool:
        busy = (TaskStatus.QUEUED, TaskStatus.RUNNING)
        return not (
            ready_jobs().exists()
            or Task.objects.filter(employee__team__in=teams, status__in=busy).exists()
        )

    env = {**os.environ, "LOG_LEVEL": "INFO"}  # INFO: the cluster logs "running." when ready
    backlog = ready_jobs().count()
    cluster = Cluster(env)
    try:
        started = time.perf_counter()
        cluster.wait_for(drained, "the resumed tasks to finish", timeout=300)
        seconds = time.perf_counter() - started
        employee = action_employee(teams[0])
        to_parked, to_executed = approve_to_executed(cluster, employee, runs, approve)
    finally:
        cluster.stop()
    return backlog, seconds, to_parked, to_executed


# --- report ----------------------------------------------------------------------------------


def _line(label: str, values: list[float], unit: str = "ms", target: float | None = None) -> str:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    text = f"  {label:<44} p50 {p50:7.1f} {unit}   p95 {p95:7.1f} {unit}"
    if target is not None:
        text += f"   (target p95 <= {target:g} {unit}: {'ok' if p95 <= target else 'MISSED'})"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="pending requests to seed")
    parser.add_argument("--requests", type=int, default=50, help="GETs, and approve POSTs")
    parser.add_argument("--runs", type=int, default=10, help="approve → executed samples")
    parser.add_argument("--no-worker", action="store_true", help="skip approve → executed")
    args = parser.parse_args(argv)

    static_root = setup_django()
    try:
        approver, teams = seed(args.rows)
        from django.test import Client

        client = Client()
        client.force_login(approver)

        print(f"\nmeasuring GET /inbox/ ({args.requests} requests each, in-process) ...")
        inbox = time_inbox(client, teams, args.requests)
        print(f"measuring {len(search_cases(teams))} searches ({args.requests} requests each) ...")
        pending_rows = _pending(teams).count()
        searches = time_searches(client, approver, teams, args.requests)
        plan_indexes = search_plan_indexes(approver, teams)
        queries = count_queries(client, query_cases(teams))
        print(f"measuring {args.requests} approve POSTs ...")
        approvals = time_approvals(client, teams, args.requests)
        queries += count_queries(client, query_cases(teams, f" after {args.requests} approvals"))

        latency = None
        if not args.no_worker:
            print(f"measuring approve → executed with a worker cluster ({args.runs} tasks) ...")

            def approve(approval) -> None:
                response = client.post(f"/inbox/{approval.pk}/approve/", secure=True, headers=HTMX)
                assert response.status_code == 200, response.status_code

            latency = with_cluster(args.runs, teams, approve)
    finally:
        shutil.rmtree(static_root, ignore_errors=True)

    print(f"\ninbox benchmark ({_pending(teams).count():,} pending requests now, DEBUG off):")
    print(_line("GET /inbox/ first page", inbox["page"], target=100))
    print(_line("GET /inbox/ first page, htmx fragment", inbox["fragment"]))
    print(_line("GET /inbox/?q=<one title>, htmx fragment", inbox["search"]))
    print(_line("POST /inbox/<id>/approve/", approvals, target=50))
    print(f"\n  search, at {pending_rows:,} pending requests (htmx fragment of the first 25):")
    for label, text, matching, times in searches:
        print(_line(f"q={text.strip()!r} ({label}, {matching:,} match)", times, target=50))
    print(f"  the title search's plans use: {', '.join(plan_indexes) or 'no index (a scan)'}")
    print("\n  SQL statements per inbox page (the count must not depend on the rows):")
    print(
        f"  {'page':<44} {'matching':>8} {'statements':>10} {'repeated':>8} "
        f"{'SQL ms':>7} {'slowest':>7}"
    )
    for label, matching, count, repeated, sql_ms, slowest_ms, _ in queries:
        print(
            f"  {label:<44} {matching:8,} {count:10} {repeated:8} {sql_ms:7.0f} {slowest_ms:7.0f}"
        )

    # Full pages and htmx fragments may differ (the layout's own queries), and so may the kinds
    # of page: unfiltered, the list's count is also the desk's (counted once); a search looks
    # its matching ids up first. Within a kind, the count may not vary with the rows.
    def kind(label: str) -> str:
        page = "fragment" if "fragment" in label else "full page"
        asks = "search" if label.startswith("q=") else "filtered" if "=" in label else "all"
        return f"{page}, {asks}"

    counts: dict[str, list[int]] = {}
    for row in queries:
        counts.setdefault(kind(row[0]), [])
        if row[2] not in counts[kind(row[0])]:
            counts[kind(row[0])].append(row[2])
    constant = all(len(found) == 1 for found in counts.values())
    print(
        f"  statements per page: {'constant' if constant else 'NOT constant'} "
        f"({'; '.join(f'{kind}: {found}' for kind, found in counts.items())})"
        f"   (target: constant: {'ok' if constant else 'MISSED'})"
    )
    slowest = max(queries, key=lambda row: row[5])
    sql = slowest[6]
    sql = sql[sql.find(" FROM ") :] if " FROM " in sql else sql
    print(f"  slowest statement ({slowest[5]:.0f} ms, {slowest[0]}): SELECT ...{sql[:700]}")
    if latency is not None:
        backlog, drained, to_parked, to_executed = latency
        print(
            f"\n  worker cluster: ran the {backlog} jobs waiting in the broker (the tasks the "
            f"approvals above resumed) in {drained:.1f} s, then idle"
        )
        print(_line("task created → waiting for approval", [s * 1000 for s in to_parked]))
        print(
            _line(
                "approve POST → task done, email in outbox",
                [s * 1000 for s in to_executed],
                target=1000,
            )
        )
        print(
            f"  (mean {statistics.mean(to_executed) * 1000:.0f} ms over {len(to_executed)} tasks)"
        )


if __name__ == "__main__":
    main()
