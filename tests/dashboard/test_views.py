"""The dashboard page, its htmx swap, the embeddable KPI fragment, and what bad input gets."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalStatus
from employees.models import EmployeeStatus
from tasks.models import TaskStatus
from tests.dashboard.conftest import local_noon, make_approval, make_escalation, make_task, spend
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def _chart_data(html: str) -> dict:
    found = re.search(
        r'<script id="dashboard-chart-data" type="application/json">(.*?)</script>', html, re.S
    )
    assert found, "the chart data block is missing"
    return json.loads(found.group(1))


def test_anonymous_people_are_sent_to_sign_in(client):
    response = client.get(reverse("dashboard:home"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_page_shows_what_needs_me_and_the_figures(client, week_of_work):
    office = week_of_work
    waiting = make_task(office.ava, TaskStatus.WAITING_APPROVAL)
    make_approval(waiting, ApprovalStatus.PENDING, decided=None, waited=timedelta(0))
    failed = make_task(office.zed, TaskStatus.FAILED, finished=timezone.now(), title="Refund run")
    office.zed.status, office.zed.status_reason = EmployeeStatus.PAUSED, "Error streak: 5 failures"
    office.zed.status_changed_at = timezone.now()
    office.zed.save()
    client.force_login(office.manager)
    response = client.get(reverse("dashboard:home"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/inbox/" data-need="approvals">\n      <span class="need-count">1</span>' in html
    assert '<span class="need-count">1</span> escalation open' in html
    assert f'href="{reverse("tasks:detail", args=[failed.pk])}"' in html and "Refund run" in html
    assert "Error streak: 5 failures" in html
    assert f'href="{reverse("employees:profile", args=["zed"])}"' in html
    # 7 days by default, every team: 6 done (5 of Zed today, of 10 in all)... the cards:
    assert 'data-period="7d"' in html
    assert re.search(
        r'data-kpi="done">\s*<dt>Tasks done</dt>\s*<dd class="kpi-value">10</dd>', html
    )
    data = _chart_data(html)
    assert len(data["days"]["labels"]) == 7 and sum(data["days"]["done"]) == 10
    assert data["days"]["budget"] == 15.0
    assert data["employees"]["labels"][0] == "Zed"
    assert '<canvas id="chart-days"' in html and '<table id="table-days">' in html
    assert "vendor/chart.js/chart.umd.min.js" in html


def test_nothing_waiting_says_so(client, office):
    client.force_login(office.viewer_a)
    html = client.get(reverse("dashboard:home")).content.decode()
    assert "Nothing needs you right now" in html
    assert "No task finished in this period." in html


def test_a_person_without_teams_sees_why_there_are_no_figures(client, office):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="newbie"))
    html = client.get(reverse("dashboard:home")).content.decode()
    assert "you are not a member of any team yet" in html


def test_an_htmx_switch_returns_only_the_figures(client, week_of_work):
    client.force_login(week_of_work.manager)
    response = client.get(
        reverse("dashboard:home"), {"period": "today", "team": week_of_work.team_b.pk}, headers=HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="kpis"')
    assert "<html" not in html and "What needs you now" not in html
    assert 'data-period="today"' in html and "Finance · today so far" in html
    data = _chart_data(html)
    assert data["days"]["done"] == [5] and data["days"]["spent"] == [15.0]
    assert data["employees"] == {"labels": ["Zed"], "done": [5], "failed": [0], "cancelled": [0]}


def test_the_choice_shows_in_the_full_page(client, week_of_work):
    client.force_login(week_of_work.manager)
    html = client.get(
        reverse("dashboard:home"), {"period": "30d", "employee": "ben"}
    ).content.decode()
    assert 'value="30d" checked' in html
    assert '<option value="ben" selected>' in html
    assert "Ben · the last 30 days" in html


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"period": "year"}, "There is no period year: choose today (today), 7d (7 days), 30d"),
        ({"team": "support"}, "The team is given by its number"),
        ({"team": "-3"}, "The team is given by its number"),
        ({"employee": "x" * 60}, "That is not an employee"),
    ],
)
def test_bad_period_or_scope_gets_a_clear_message(client, office, query, message):
    client.force_login(office.manager)
    page = client.get(reverse("dashboard:home"), query)
    assert page.status_code == 400
    assert message in page.content.decode() and "What needs you now" in page.content.decode()
    swap = client.get(reverse("dashboard:home"), query, headers=HTMX)
    assert swap.status_code == 400 and swap["Content-Type"].startswith("text/plain")
    assert message in swap.content.decode()
    embed = client.get(reverse("dashboard:kpis_hx"), query)
    assert embed.status_code == 400 and message in embed.content.decode()


@pytest.mark.parametrize("url_name", ["dashboard:home", "dashboard:kpis_hx"])
def test_a_team_or_employee_the_person_may_not_see_is_not_found(client, office, url_name):
    client.force_login(office.viewer_a)
    url = reverse(url_name)
    assert client.get(url, {"team": office.team_b.pk}).status_code == 404
    assert client.get(url, {"employee": "zed"}).status_code == 404
    assert client.get(url, {"team": 999999}).status_code == 404
    assert client.get(url, {"employee": "nobody"}).status_code == 404
    assert client.get(url, {"team": office.team_a.pk, "employee": "ava"}).status_code == 200
    client.force_login(office.manager)  # Zed exists, but not in Support
    assert client.get(url, {"team": office.team_a.pk, "employee": "zed"}).status_code == 404


def test_the_embeddable_fragment_holds_one_employees_cards(client, week_of_work):
    client.force_login(week_of_work.viewer_a)
    response = client.get(reverse("dashboard:kpis_hx"), {"period": "7d", "employee": "ava"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith('<section class="kpi-embed"') and "<html" not in html
    assert "css/dashboard.css" in html  # the host page need not load the cards' styles
    assert re.search(r'data-kpi="done">\s*<dt>Tasks done</dt>\s*<dd class="kpi-value">3</dd>', html)
    assert 'hx-get="/kpis/?period=30d&amp;employee=ava"' in html
    assert "<canvas" not in html


def test_the_page_needs_few_queries_whatever_the_rows(
    client, office, django_assert_max_num_queries
):
    """Counts stay put as rows grow: a bigger office costs no extra statements."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(office.manager)
    url = reverse("dashboard:home")

    def statements() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url, {"period": "30d"}).status_code == 200
        return len(captured)

    small = statements()
    for n in range(8):
        employee = EmployeeFactory(team=office.team_b if n % 2 else office.team_a)
        employee.status = EmployeeStatus.PAUSED
        employee.save()
        for days_ago in range(0, 30, 3):
            task = make_task(employee, finished=local_noon(days_ago))
            make_escalation(task)
            make_approval(
                task, ApprovalStatus.REJECTED, decided=local_noon(days_ago), waited=timedelta(1)
            )
            make_task(employee, TaskStatus.BUDGET_EXHAUSTED)
        spend(employee, 2, "1.00")
    assert statements() == small, small
    print("statements of the full page:", small)
    with django_assert_max_num_queries(18):
        client.get(url, {"period": "30d"})
    # Session, user, teams, employees; tasks by day, spend by day, tasks by employee; the
    # period's tasks, decisions and spend.
    with django_assert_max_num_queries(10):
        client.get(url, {"period": "7d"}, headers=HTMX)
    with django_assert_max_num_queries(8):
        client.get(reverse("dashboard:kpis_hx"), {"employee": "ava"})
