"""In a real browser: the tasks list nests delegated work, filters without a reload, keeps
itself up to date, and fits a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from employees.models import Employee
from tasks.loop import run_task
from tasks.services import task_create
from tests.browser.test_directory_browser import _log_in, manager  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _watch(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


@pytest.fixture
def work(manager, settings):  # noqa: F811
    settings.OPENAI_API_KEY = ""  # offline: Olivia delegates to her three specialists
    olivia = Employee.objects.get(handle="olivia-onboarding")
    root, _ = task_create(
        employee=olivia,
        title="Onboard Kim Lee",
        input="Kim Lee (kim@example.com) starts Monday as an analyst.",
        urgent=True,
        dispatch=False,
    )
    run_task(root.pk)
    refund, _ = task_create(
        employee=Employee.objects.get(handle="ava-support"),
        title="Refund for order A-1002",
        input="Ann was charged twice.",
        dispatch=False,
    )
    return {"root": root, "refund": refund, "children": list(root.children.order_by("pk"))}


def _rows(page) -> list[str]:
    return page.locator("#task-rows .task-row").evaluate_all(
        "rows => rows.map(r => r.dataset.task + ':' + r.dataset.level)"
    )


def test_the_list_nests_filters_searches_and_updates_without_reload(page, live_server, work):
    root, refund, children = work["root"], work["refund"], work["children"]
    assert len(children) == 3
    problems = _watch(page)
    _log_in(page, live_server, "morgan")
    page.goto(f"{live_server.url}/tasks/")
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
    rows = _rows(page)
    assert rows[:2] == [f"{refund.pk}:0", f"{root.pk}:0"]
    assert rows[2:] == [f"{child.pk}:1" for child in children]  # nested under their parent
    first_child = page.locator(f'.task-row[data-task="{children[0].pk}"]')
    expect(first_child.locator(".task-link")).not_to_contain_text("For @")
    expect(first_child).to_contain_text("Delegated by @olivia-onboarding")
    page.evaluate("window.__noReload = true")

    page.get_by_label("Status").select_option("waiting_children")
    expect(page.locator("#task-rows .task-row")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"status=waiting_children"))
    page.get_by_label("Status").select_option("")

    page.get_by_role("searchbox").fill("charged twice")
    expect(page.locator("#task-rows .task-row")).to_have_count(1)
    expect(page.locator(f'.task-row[data-task="{refund.pk}"]')).to_be_visible()
    expect(page).to_have_url(re.compile(r"q=charged"))
    page.get_by_role("searchbox").fill("")
    expect(page.locator("#task-rows .task-row")).to_have_count(5)

    # Live: a new task appears by itself (the list refreshes every 5 s while the tab is shown).
    new, _ = task_create(
        employee=Employee.objects.get(handle="rex-it-ops"),
        title="Restart the VPN",
        input="It is down.",
        dispatch=False,
    )
    expect(page.locator(f'.task-row[data-task="{new.pk}"]')).to_be_visible(timeout=12_000)
    assert page.evaluate("window.__noReload") is True
    assert problems == []


def test_a_bad_filter_value_gets_a_message(page, live_server, work):
    problems = _watch(page)
    _log_in(page, live_server, "morgan")
    response = page.goto(f"{live_server.url}/tasks/?team=abc&created_from=2026-99-01")
    assert response.status == 200
    expect(page.locator("[data-filter-problems]")).to_contain_text("Team:")
    expect(page.locator("[data-filter-problems]")).to_contain_text("From:")
    expect(page.locator("#task-rows .task-row").first).to_be_visible()
    assert problems == []


def test_the_list_fits_a_phone(browser, live_server, work):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    problems = _watch(page)
    try:
        _log_in(page, live_server, "morgan")
        page.goto(f"{live_server.url}/tasks/")
        expect(page.locator("#task-rows .task-row").first).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the tasks list scrolls sideways on a phone ({width}px)"
        page.get_by_label("Employee").select_option("ava-support")
        expect(page.locator("#task-rows .task-row")).to_have_count(1)
        page.screenshot(path="test-artifacts/task-list-phone.png", full_page=True)
        assert problems == []
    finally:
        context.close()
