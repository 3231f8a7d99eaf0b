"""In a real browser: a manager's dashboard draws its charts, and switches period without a reload."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from employees.demo import load_demo_workforce
from employees.models import Employee, EmployeeStatus, Team
from tasks.models import TaskStatus
from tests.browser.test_directory_browser import _log_in
from tests.dashboard.conftest import local_noon, make_task, spend
from tests.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def manager(transactional_db):
    """The demo workforce with a month of work: Ava busy all month, Rex on some days; Rex paused."""
    load_demo_workforce()
    user = UserFactory(username="morgan", first_name="Morgan", last_name="Lee")
    for team in Team.objects.all():
        MembershipFactory(team=team, user=user, role="manager")
    ava, rex = Employee.objects.get(handle="ava-support"), Employee.objects.get(handle="rex-it-ops")
    for days_ago in range(0, 28, 2):
        make_task(ava, finished=local_noon(days_ago), took=timedelta(minutes=12), cost="0.05")
    for days_ago in (0, 12):
        make_task(rex, TaskStatus.FAILED, finished=local_noon(days_ago), title="Restart the VPN")
    make_task(rex, finished=local_noon(3), cost="0.20")
    spend(ava, 0, "0.75")
    spend(ava, 20, "2.00")
    Employee.objects.filter(pk=rex.pk).update(
        status=EmployeeStatus.PAUSED,
        status_reason="Error streak: 2 failed tasks in a row.",
        status_changed_at=timezone.now(),
    )
    return user


def _watch_console(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def _table_cells(page, table: str) -> list[list[str]]:
    return page.locator(f"#{table} tbody tr").evaluate_all(
        "rows => rows.map(r => Array.from(r.children).map(c => c.textContent.trim()))"
    )


def _expect_charts_drawn(page) -> None:
    for canvas in ("#chart-days", "#chart-employees"):
        expect(page.locator(canvas)).to_be_visible()
        page.wait_for_function(
            "id => window.Chart && Chart.getChart(document.querySelector(id)) !== undefined",
            arg=canvas,
        )
        width = page.locator(canvas).evaluate("c => c.width")
        assert width > 100, f"{canvas} has no drawing surface ({width}px)"


def _open_dashboard(page, live_server) -> None:
    _log_in(page, live_server, "morgan")
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()


def test_manager_sees_charts_and_switches_period_without_reload(page, live_server, manager):
    problems = _watch_console(page)
    _open_dashboard(page, live_server)
    expect(page.get_by_role("heading", name="What needs you now")).to_be_visible()
    expect(page.locator('[data-need="paused"] .need-count')).to_have_text("1")
    expect(page.get_by_text("Error streak: 2 failed tasks in a row.")).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Restart the VPN")).first).to_be_visible()

    # 7 days by default: Ava's 4 tasks (today, 2, 4 and 6 days ago), Rex's 1 done and 1 failed.
    _expect_charts_drawn(page)
    expect(page.locator('[data-kpi="done"] .kpi-value')).to_have_text("5")
    page.get_by_text("Table: outcomes per employee").click()
    assert _table_cells(page, "table-employees") == [["Ava", "4", "0", "0"], ["Rex", "1", "1", "0"]]
    page.get_by_text("Table: tasks and cost per day").click()
    days = _table_cells(page, "table-days")
    assert len(days) == 7 and days[-1][1:] == ["1", "1", "0", "$0.75"]
    page.evaluate("window.__noReload = true")

    page.get_by_text("30 days", exact=True).click()
    expect(page).to_have_url(re.compile(r"period=30d"))
    expect(page.locator('[data-kpi="done"] .kpi-value')).to_have_text("15")
    _expect_charts_drawn(page)
    assert len(_table_cells(page, "table-days")) == 30
    expect(page.locator('[data-kpi="cost-per-day"] .kpi-note')).to_contain_text("$2.75 in 30 days")

    page.locator("#kpi-filters select[name=employee]").select_option("rex-it-ops")
    expect(page).to_have_url(re.compile(r"employee=rex-it-ops"))
    expect(page.locator('[data-kpi="success"] .kpi-value')).to_have_text("33 %")
    assert _table_cells(page, "table-employees") == [["Rex", "1", "2", "0"]]
    assert page.evaluate("window.__noReload") is True  # every switch was a swap
    assert page.evaluate("Chart.instances ? Object.keys(Chart.instances).length : 0") == 2

    page.go_back()  # the URL kept the choice: back shows the 30 days of everyone
    expect(page.locator('[data-kpi="done"] .kpi-value')).to_have_text("15")
    page.get_by_text("Table: outcomes per employee").click()
    page.locator("#table-employees").get_by_role("link", name="Ava").click()
    expect(page).to_have_url(re.compile(r"/employees/ava-support/"))
    assert not problems, problems


def test_dashboard_works_on_a_phone(browser, live_server, manager):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    problems = _watch_console(page)
    try:
        _open_dashboard(page, live_server)
        _expect_charts_drawn(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the dashboard scrolls sideways on a phone ({width}px wide)"
        page.get_by_text("Today", exact=True).click()
        expect(page).to_have_url(re.compile(r"period=today"))
        expect(page.locator('[data-kpi="done"] .kpi-value')).to_have_text("1")
        expect(page.locator('[data-kpi="cost-per-day"] dt')).to_have_text("Spent today")
        _expect_charts_drawn(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the figures scroll sideways on a phone ({width}px wide)"
        page.screenshot(path="test-artifacts/dashboard-phone.png", full_page=True)
        assert not problems, problems
    finally:
        context.close()


def test_dashboard_at_desktop_width(page, live_server, manager):
    problems = _watch_console(page)
    _open_dashboard(page, live_server)
    _expect_charts_drawn(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the dashboard scrolls sideways at 1,280 px ({width}px wide)"
    page.screenshot(path="test-artifacts/dashboard-desktop.png", full_page=True)
    assert not problems, problems
