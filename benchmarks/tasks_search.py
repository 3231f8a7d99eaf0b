"""Benchmark: the tasks list's search at 100,000 tasks, with the trigram indexes and without.

    ./workforce bench tasks_search   (or)
    .venv/bin/python benchmarks/tasks_search.py [--rows 100000] [--requests 40]

Seeds, once, --rows tasks of 50 employees in 5 teams (a later run tops them up), each with a
title and instructions of a few hundred characters drawn from a fixed vocabulary: customer
names, companies, products, order and invoice numbers, e-mail addresses; one task in ten has a
run with two steps (one of them a failed tool call now and then), so the list's "done with
errors" check has rows to look at. The person searching is a member of all five teams (a
scoped query, as for everyone but superusers). Seeding is bulk inserts, no audit entries.

Then, with DEBUG off, for search terms from rare (one task) to common (two tasks in five):

- the list's statements for a search (the first page of 50 rows and, when it is full, the
  count, which stops at 1,001: "more than 1,000 match"), p50/p95
  over --requests runs per term, with the indexes (tasks/migrations/0011 and 0013) and, inside a
  transaction that drops them and is rolled back, without;
- GET /tasks/?q=<term> as htmx asks for it (the list fragment), with the indexes: server time,
  in-process with Django's test client.

Target: the search's SQL p95 <= 50 ms at 100,000 tasks with the indexes.
"""

from __future__ import annotations

import argparse
import math
import os
import random
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

DATABASE = "aiworkforce_bench_tasks_search"
VIEWER = "tasks-search-bench-viewer"  # the seeding marker: teams and employees come with it
TEAMS, EMPLOYEES_PER_TEAM = 5, 10
CHUNK = 5000
HTMX = {"HX-Request": "true"}
INDEXES = ("task_title_trgm", "task_input_trgm", "task_list_order_idx")

SURNAMES = [
    "Abbott", "Baker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
    "Ivanova", "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov",
    "Quinn", "Rossi", "Schmidt", "Tanaka", "Ullman", "Varga", "Weber", "Xu", "Yilmaz",
    "Zimmermann", "Andersson", "Bianchi", "Costa", "Dimitrov", "Esposito", "Novak",
]  # fmt: skip
COMPANIES = [
    "Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Logistics", "Wayne Foods",
    "Hooli", "Vandelay Imports", "Soylent", "Tyrell Systems", "Cyberdyne", "Wonka Retail",
    "Oceanic Air", "Gringotts Bank", "Monarch Energy", "Pied Piper", "Dunder Paper",
    "Prestige Worldwide", "Bluth Homes", "Sterling Partners",
]  # fmt: skip
PRODUCTS = [
    "laptop", "monitor", "headset", "licence", "subscription", "badge", "phone", "desk",
    "chair", "docking station", "keyboard", "VPN access", "invoice", "refund", "contract",
]  # fmt: skip
ASKS = [
    "Order status for", "Refund request from", "Access request by", "Invoice question from",
    "Delivery delay for", "Onboarding of", "Password reset for", "Contract renewal with",
]  # fmt: skip
SENTENCES = [
    "The customer says the parcel has not arrived yet.",
    "Please check the order history and reply with the expected delivery date.",
    "They were charged twice and would like the second payment refunded.",
    "The new starter needs a laptop, a badge and an account before Monday.",
    "Ask the finance lead before approving anything above the usual limit.",
    "The invoice total does not match the purchase order.",
    "Reply politely, state what was checked, and say when they will hear back.",
    "Escalate to a person if the request involves admin access.",
    "The previous ticket was closed without an answer.",
    "Note anything unusual for the team lead.",
]


# --- setup -----------------------------------------------------------------------------------


def setup_django() -> str:
    """Deployed settings (DEBUG off) on a database of our own; returns the static files dir."""
    import django

    os.environ["OPENAI_API_KEY"] = ""
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DEBUG"] = "false"
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


def _text(n: int) -> tuple[str, str]:
    """The n-th task's title and instructions (the same on every run)."""
    rng = random.Random(n)  # noqa: S311 - reproducible test data, not secrets
    surname, company = rng.choice(SURNAMES), rng.choice(COMPANIES)
    product = rng.choice(PRODUCTS)
    title = f"{rng.choice(ASKS)} {surname} ({company}): {product}"
    body = " ".join(rng.sample(SENTENCES, 4))
    text = (
        f"From: {surname.lower()}.{n}@customer{n % 997}.example.com\n"
        f"Order A-{100000 + n}, invoice INV-{200000 + n}.\n\n{body}"
    )
    return title, text


def seed(rows: int):
    """The viewer, teams and employees (once), and tasks up to `rows`."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from employees.models import Employee, EmployeeStatus, Team, TeamMembership, TeamRole
    from tasks.models import Task

    user_model = get_user_model()
    viewer = user_model.objects.filter(username=VIEWER).first()
    if viewer is None:
        with transaction.atomic():
            viewer = user_model.objects.create_user(VIEWER, f"{VIEWER}@example.com")
            teams = Team.objects.bulk_create(
                [Team(name=f"Search bench {n}") for n in range(1, TEAMS + 1)]
            )
            TeamMembership.objects.bulk_create(
                [TeamMembership(team=t, user=viewer, role=TeamRole.VIEWER) for t in teams]
            )
            Employee.objects.bulk_create(
                [
                    Employee(
                        name=f"Searcher {n:02d}",
                        handle=f"search-bench-{n:02d}",
                        team=teams[(n - 1) // EMPLOYEES_PER_TEAM],
                        role_title="Support specialist",
                        job_description="Answers customers (tasks search benchmark).",
                        status=EmployeeStatus.ACTIVE,
                        hired_at=timezone.now(),
                    )
                    for n in range(1, TEAMS * EMPLOYEES_PER_TEAM + 1)
                ]
            )
    employees = list(Employee.objects.filter(handle__startswith="search-bench-").order_by("pk"))
    have = Task.objects.filter(employee__in=employees).count()
    missing = rows - have
    if missing <= 0:
        print(f"seeding: already seeded ({have:,} tasks; marker: user {VIEWER})")
    else:
        print(f"seeding {missing:,} tasks ({have:,} there already)")
        started = time.perf_counter()
        for made in range(0, missing, CHUNK):
            with transaction.atomic():
                _insert(employees, range(have + made, have + min(made + CHUNK, missing)))
            done = min(made + CHUNK, missing)
            print(f"  {have + done:7,} / {rows:,} tasks  ({time.perf_counter() - started:5.1f} s)")
        seconds = time.perf_counter() - started
        print(f"seeded {missing:,} tasks in {seconds:.1f} s ({missing / seconds:,.0f} rows/s)")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # A settled database, as a deployed one is: GIN pending lists merged, statistics
        # current for every table (the scoping joins employees and memberships too).
        cursor.execute("VACUUM (ANALYZE)")
    print(f"vacuumed and analysed in {time.perf_counter() - started:.1f} s")
    return viewer


def _insert(employees, numbers: range) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from tasks.models import Run, RunStatus, Step, StepKind, Task, TaskStatus

    now = timezone.now()
    statuses = [TaskStatus.DONE] * 7 + [TaskStatus.FAILED, TaskStatus.QUEUED, TaskStatus.PAUSED]
    tasks = []
    for n in numbers:
        title, text = _text(n)
        tasks.append(
            Task(
                employee=employees[n % len(employees)],
                title=title,
                input=text,
                status=statuses[n % len(statuses)],
                result="Replied to the customer." if n % 10 < 7 else "",
            )
        )
    tasks = Task.objects.bulk_create(tasks)
    # Spread over the last 90 days, newest last (created_at is auto_now_add: set afterwards).
    span = 90 * 24 * 3600
    for task, n in zip(tasks, numbers, strict=True):
        task.created_at = now - timedelta(seconds=span * (1 - (n % 10_000) / 10_000))
    Task.objects.bulk_update(tasks, ["created_at"])
    with_steps = [task for task, n in zip(tasks, numbers, strict=True) if n % 10 == 0]
    runs = Run.objects.bulk_create(
        [Run(task=task, number=1, status=RunStatus.FINISHED) for task in with_steps]
    )
    steps = []
    for run, task in zip(runs, with_steps, strict=True):
        failed = task.pk % 3 == 0
        steps += [
            Step(task=task, run=run, seq=1, kind=StepKind.LLM_CALL, payload={"model": "bench"}),
            Step(
                task=task,
                run=run,
                seq=2,
                kind=StepKind.TOOL_CALL,
                payload={
                    "name": "http_request",
                    "status": "error" if failed else "ok",
                    "result": {"error": "request failed"} if failed else {"summary": "200"},
                },
            ),
        ]
    Step.objects.bulk_create(steps)


# --- measuring -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def search_terms(viewer) -> list[tuple[str, str, int]]:
    """(label, term, matching tasks): from one task to about one in ten."""
    from tasks.selectors import TaskListFilters, tasks_listed_for

    def count(term: str) -> int:
        return tasks_listed_for(viewer, TaskListFilters(query=term)).count()

    one_title, _ = _text(4242)
    terms = [
        ("an invoice number (1 task)", "INV-204242"),
        ("an e-mail address (1 task)", _text(777)[1].split("\n")[0].removeprefix("From: ")),
        ("a customer's domain (~100)", "customer512.example"),
        ("a title, as pasted (few)", one_title),
        ("a company (1 in 20)", "Vandelay"),
        ("a surname (1 in 32)", "Nakamura"),
        ("a product word (1 in 15)", "docking station"),
        ("a common phrase (~1 in 2.5)", "refunded"),
        ("no match", "zebra-crossing"),
    ]
    return [(label, term, count(term)) for label, term in terms]


def time_sql(viewer, terms, requests: int) -> dict[str, list[float]]:
    """Milliseconds for the list's statements of one search, as the list pages it
    (tasks.views.SearchPaginator): the first page of 50, and the count up to 1,001 rows when
    the page is full (a shorter page is its own count)."""
    from tasks.selectors import TaskListFilters, tasks_listed_for
    from tasks.views import SearchPaginator

    def first_page(term: str) -> None:
        page = SearchPaginator(tasks_listed_for(viewer, TaskListFilters(query=term)), 50)
        list(page.get_page(1).object_list)

    figures = {}
    for label, term, _ in terms:
        for _ in range(3):  # warm up: plans, caches
            first_page(term)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            first_page(term)
            times.append((time.perf_counter() - started) * 1000)
        figures[label] = times
    return figures


def time_without_indexes(viewer, terms, requests: int) -> dict[str, list[float]]:
    """The same, in a transaction that drops the indexes and is rolled back."""
    from django.db import connection, transaction

    with transaction.atomic():
        with connection.cursor() as cursor:
            for name in INDEXES:
                cursor.execute(f'DROP INDEX "{name}"')
        figures = time_sql(viewer, terms, requests)
        transaction.set_rollback(True)
    return figures


def time_pages(client, terms, requests: int) -> dict[str, list[float]]:
    from urllib.parse import urlencode

    figures = {}
    for label, term, _ in terms:
        url = "/tasks/?" + urlencode({"q": term})
        for _ in range(3):
            assert client.get(url, secure=True, headers=HTMX).status_code == 200
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url, secure=True, headers=HTMX)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
        figures[label] = times
    return figures


def plan_of(viewer, term: str) -> str:
    from tasks.selectors import TaskListFilters, tasks_listed_for

    return tasks_listed_for(viewer, TaskListFilters(query=term))[:50].explain()


# --- report ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="tasks to seed")
    parser.add_argument("--requests", type=int, default=40, help="runs per search term")
    args = parser.parse_args(argv)

    static_root = setup_django()
    try:
        viewer = seed(args.rows)
        from django.test import Client

        from tasks.models import Task

        client = Client()
        client.force_login(viewer)
        terms = search_terms(viewer)
        total = Task.objects.filter(employee__handle__startswith="search-bench-").count()
        print(f"\nmeasuring {len(terms)} search terms x {args.requests} runs, with the indexes ...")
        with_index = time_sql(viewer, terms, args.requests)
        pages = time_pages(client, terms, args.requests)
        rare_plan = plan_of(viewer, terms[0][1])
        print("measuring the same without the indexes (dropped in a rolled-back transaction) ...")
        without = time_without_indexes(viewer, terms, max(5, args.requests // 4))
    finally:
        shutil.rmtree(static_root, ignore_errors=True)

    print(f"\ntasks search benchmark ({total:,} tasks, DEBUG off; SQL = first page + count):")
    header = f"  {'search term':<30} {'matching':>8}  {'with index p50/p95':>19}"
    print(f"{header}  {'without p50/p95':>17}  {'GET fragment p95':>16}")
    for label, _term, matching in terms:
        a, b, page = with_index[label], without[label], pages[label]
        print(
            f"  {label:<30} {matching:8,}  {percentile(a, 50):7.1f} /{percentile(a, 95):7.1f} ms"
            f"  {percentile(b, 50):6.1f} /{percentile(b, 95):6.1f} ms"
            f"  {percentile(page, 95):12.1f} ms"
        )
    every_with = [t for times in with_index.values() for t in times]
    every_without = [t for times in without.values() for t in times]
    every_page = [t for times in pages.values() for t in times]
    p95 = percentile(every_with, 95)
    print(
        f"\n  all terms, SQL with the indexes:    p50 {percentile(every_with, 50):6.1f} ms   "
        f"p95 {p95:6.1f} ms   (target p95 <= 50 ms: {'ok' if p95 <= 50 else 'MISSED'})"
    )
    print(
        f"  all terms, SQL without the indexes: p50 {percentile(every_without, 50):6.1f} ms   "
        f"p95 {percentile(every_without, 95):6.1f} ms"
    )
    print(
        f"  all terms, GET /tasks/?q= fragment: p50 {percentile(every_page, 50):6.1f} ms   "
        f"p95 {percentile(every_page, 95):6.1f} ms"
    )
    uses = all(name in rare_plan for name in INDEXES[:2])
    print(f"  the rare term's plan uses both trigram indexes: {'yes' if uses else 'NO'}")
    if not uses:
        print(rare_plan)


if __name__ == "__main__":
    main()
