"""The tasks list: search, filters, nesting of delegated tasks, who gave each task, scoping."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from aiworkforce import pagination
from employees.models import Duty
from tasks.models import Task, TaskSource, WebhookEndpoint
from tasks.selectors import TaskListFilters, tasks_listed_for
from tasks.services import task_create
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


def _row_ids(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li class="task-row[^"]*"[^>]*data-task="(\d+)"', page)]


@pytest.fixture
def office():
    ops, finance = TeamFactory(name="Ops"), TeamFactory(name="Finance")
    lead = EmployeeFactory(handle="lead", name="Lead", team=ops)
    helper = EmployeeFactory(handle="helper", name="Helper", team=ops)
    clerk = EmployeeFactory(handle="clerk", name="Clerk", team=finance)
    person = UserFactory(username="morgan", first_name="Morgan", last_name="Lee")
    root, _ = task_create(
        employee=lead,
        title="Onboard Kim",
        input="Kim starts Monday.",
        requested_by_user=person,
        dispatch=False,
    )
    child, _ = task_create(
        employee=helper,
        title="For @lead: Order a laptop for Kim with a long description " + "x" * 100,
        input="A laptop.",
        parent=root,
        source=TaskSource.DELEGATION,
        requested_by_employee=lead,
        dispatch=False,
    )
    secret, _ = task_create(
        employee=clerk,
        title="For @lead: Payroll for Kim",
        input="Salary.",
        parent=root,
        source=TaskSource.DELEGATION,
        requested_by_employee=lead,
        dispatch=False,
    )
    other, _ = task_create(
        employee=clerk, title="Close the books", input="Month end.", dispatch=False
    )
    member = MembershipFactory(team=ops, role="viewer").user
    return {
        "ops": ops,
        "finance": finance,
        "lead": lead,
        "root": root,
        "child": child,
        "secret": secret,
        "other": other,
        "member": member,
    }


def test_children_are_nested_under_their_parent_with_short_titles(client, office):
    client.force_login(office["member"])
    page = client.get("/tasks/").text
    assert _row_ids(page) == [office["root"].pk, office["child"].pk, office["secret"].pk]
    child = page[page.index(f'data-task="{office["child"].pk}"') :]
    assert 'data-level="1"' in child[:200]
    assert f"#{office['child'].pk} Order a laptop for Kim" in child  # no "For @lead: "
    assert "…" in child[: child.index("</a>")]  # shortened
    # Another team's child: its status only, no title.
    assert "Payroll" not in page and "(a task of a team you are not in)" in page
    assert "Close the books" not in page  # another team's task is not listed


def test_who_or_what_gave_each_task(client, office):
    duty = Duty.objects.create(
        employee=office["lead"], name="Morning check", cron="0 9 * * *", instructions="Check."
    )
    hook = WebhookEndpoint.objects.create(
        employee=office["lead"], name="Helpdesk", key="00000000-0000-0000-0000-000000000001"
    )
    task_create(
        employee=office["lead"],
        title="Duty run",
        input="Check.",
        source=TaskSource.DUTY,
        idempotency_key=f"duty:{duty.pk}:2026-01-05T09:00:00+00:00",
        dispatch=False,
    )
    task_create(
        employee=office["lead"],
        title="Hook event",
        input="{}",
        source=TaskSource.WEBHOOK,
        idempotency_key=f"webhook:{hook.pk}:msg_1",
        dispatch=False,
    )
    client.force_login(office["member"])
    page = client.get("/tasks/").text
    said = re.findall(r"<span data-assigned-by>([^<]*)</span>", page)
    assert "Assigned by Morgan Lee" in said
    assert "Delegated by @lead" in said
    assert "Duty “Morning check”" in said
    assert "Webhook “Helpdesk”" in said


def test_search_finds_title_or_input_and_lists_matches_flat(client, office):
    client.force_login(office["member"])
    by_title = client.get("/tasks/", {"q": "laptop"}).text
    assert _row_ids(by_title) == [office["child"].pk]
    assert f'part of <a href="/tasks/{office["root"].pk}/"' in by_title
    by_input = client.get("/tasks/", {"q": "STARTS monday"}).text
    assert _row_ids(by_input) == [office["root"].pk]
    assert _row_ids(client.get("/tasks/", {"q": "payroll"}).text) == []  # not visible


def test_filters_by_employee_team_status_source_and_dates(client, office):
    user = UserFactory(is_superuser=True)
    client.force_login(user)
    assert _row_ids(client.get("/tasks/", {"employee": "helper"}).text) == [office["child"].pk]
    team = set(_row_ids(client.get("/tasks/", {"team": office["finance"].pk}).text))
    assert team == {office["secret"].pk, office["other"].pk}
    Task.objects.filter(pk=office["other"].pk).update(status="failed")
    assert _row_ids(client.get("/tasks/", {"status": "failed"}).text) == [office["other"].pk]
    delegated = set(_row_ids(client.get("/tasks/", {"source": "delegation"}).text))
    assert delegated == {office["child"].pk, office["secret"].pk}
    Task.objects.filter(pk=office["root"].pk).update(created_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate().isoformat()
    recent = _row_ids(client.get("/tasks/", {"created_from": today, "created_to": today}).text)
    assert office["root"].pk not in recent and office["other"].pk in recent
    old_day = (timezone.localdate() - timedelta(days=10)).isoformat()
    assert _row_ids(client.get("/tasks/", {"created_to": old_day}).text) == [office["root"].pk]


@pytest.mark.parametrize(
    "params, says",
    [
        ({"team": "not-a-number"}, "Team:"),
        ({"employee": "nobody"}, "Employee:"),
        ({"status": "bogus"}, "Status:"),
        ({"created_from": "2026-13-45"}, "From:"),
        ({"created_from": "2026-02-02", "created_to": "2026-01-01"}, "before the “From” date"),
        ({"page": "x9"}, ""),
    ],
)
def test_bad_filter_values_give_a_message_not_an_error(client, office, params, says):
    client.force_login(office["member"])
    for headers in ({}, {"HX-Request": "true"}):
        response = client.get("/tasks/", params, headers=headers)
        assert response.status_code == 200
        if says:
            assert "Some filters could not be used" in response.text and says in response.text


def test_a_team_filter_for_another_team_shows_nothing_of_it(client, office):
    client.force_login(office["member"])
    page = client.get("/tasks/", {"team": office["finance"].pk}).text
    assert "Some filters could not be used" in page  # not one of the person's teams
    assert "Close the books" not in page and "Payroll" not in page


def test_the_list_fragment_polls_only_while_the_tab_is_visible_and_pushes_filter_urls(
    client, office
):
    client.force_login(office["member"])
    page = client.get("/tasks/", {"status": "queued"}).text
    assert 'hx-push-url="true"' in page
    rows = re.search(r'<section id="task-rows"[^>]*>', page, re.S).group(0)
    assert "every 5s [document.visibilityState === 'visible']" in rows
    assert "status=queued" in rows  # it keeps the filters when it refreshes
    fragment = client.get("/tasks/", {"status": "queued"}, headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<section id="task-rows"') and "<html" not in fragment


def test_big_lists_are_paginated(client, office):
    employee = office["lead"]
    Task.objects.bulk_create(
        [Task(employee=employee, title=f"Bulk {n}", input="x") for n in range(60)]
    )
    client.force_login(office["member"])
    first = client.get("/tasks/").text
    assert len(_row_ids(first)) >= 50 and "Page 1 of 2" in first
    second = client.get("/tasks/", {"page": 2}).text
    assert "Page 2 of 2" in second


FILLER = (
    "Please look into the customer's request, check the order history, reply with the "
    "status and the expected delivery date, and note anything unusual for the team lead. "
)


def test_the_search_uses_the_trigram_indexes(office):
    """At 20,000 rows the planner already prefers the indexes to a scan of the table (the
    benchmark, benchmarks/tasks_search.py, times it at 100,000)."""
    Task.objects.bulk_create(
        [
            Task(
                employee=office["lead"],
                title=f"Order question {n}",
                input=f"From customer{n}@example.com\n\n{FILLER * 2}"
                + ("Weyland shipment is late." if n == 1234 else ""),
            )
            for n in range(20_000)
        ],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        # What autovacuum does after a bulk load: move the GIN pending lists into the indexes.
        cursor.execute("SELECT gin_clean_pending_list('task_title_trgm'::regclass)")
        cursor.execute("SELECT gin_clean_pending_list('task_input_trgm'::regclass)")
        cursor.execute("ANALYZE tasks_task")
    user = UserFactory(is_superuser=True)
    plan = tasks_listed_for(user, TaskListFilters(query="weyland"))[:50].explain()
    assert "task_title_trgm" in plan and "task_input_trgm" in plan, plan
    assert "Seq Scan on tasks_task" not in plan, plan
    page = tasks_listed_for(user, TaskListFilters(query="weyland"))
    assert [task.title for task in page] == ["Order question 1234"]


def test_a_search_with_a_short_first_page_is_counted_from_its_rows(client, office):
    from django.test.utils import CaptureQueriesContext

    from aiworkforce.pagination import SearchPaginator
    from tasks.selectors import search_count_at_most

    user = UserFactory(is_superuser=True)
    listed = tasks_listed_for(user, TaskListFilters(query="onboard"))
    with CaptureQueriesContext(connection) as captured:
        page = SearchPaginator(
            listed, 50, count_at_most=lambda cap: search_count_at_most(listed, cap)
        ).get_page(1)
        titles = [task.title for task in page.object_list]
    assert titles == ["Onboard Kim"] and page.paginator.count == 1
    assert len(captured.captured_queries) == 1  # the page's rows are its count


def test_a_common_search_says_more_than_the_cap_and_still_pages_to_the_end(
    client, office, monkeypatch
):
    from tasks import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    monkeypatch.setattr(views, "SEARCH_COUNT_CAP", 3)
    monkeypatch.setattr(pagination, "SEARCH_COUNT_CAP", 3)
    made = Task.objects.bulk_create(
        [Task(employee=office["lead"], title=f"Zeppelin {n}", input="x") for n in range(9)]
    )
    clerk = EmployeeFactory(team=office["finance"])  # another team's: never counted or shown
    Task.objects.bulk_create([Task(employee=clerk, title="Zeppelin", input="x")])
    client.force_login(office["member"])
    first = client.get("/tasks/", {"q": "zeppelin"}).text
    assert "More than 3 tasks match" in first
    seen, number = [], 1
    while True:
        page = client.get("/tasks/", {"q": "zeppelin", "page": number}).text
        seen += _row_ids(page)
        if f"page={number + 1}" not in page:
            break
        number += 1
    assert number == 5 and sorted(seen) == sorted(task.pk for task in made)


def test_a_long_search_is_asked_word_by_word_and_still_matches_the_exact_text(office):
    user = UserFactory(is_superuser=True)
    lead = office["lead"]
    mail = Task.objects.create(
        employee=lead, title="Reply", input="From: ann.lee@customer7.example.com\n\n100% refund?"
    )
    Task.objects.create(employee=lead, title="Other", input="lee.ann@example.com customer7")

    def found(text: str) -> list[int]:
        return [task.pk for task in tasks_listed_for(user, TaskListFilters(query=text))]

    assert found("ANN.LEE@customer7.example.com") == [mail.pk]  # any case, those words in order
    assert found("ann_lee@customer7") == []  # "_" is not "any one character"
    assert found("0% refund") == [mail.pk] and found("100%refund") == []  # "%" is literal
    plan = tasks_listed_for(user, TaskListFilters(query="ann.lee@customer7.example")).explain()
    assert "'%CUSTOMER7%'" in plan and "strpos" in plan, plan  # each word, then the text
