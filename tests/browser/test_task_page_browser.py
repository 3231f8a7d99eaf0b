"""In a real browser: the task page follows the work live, without a reload."""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connections
from playwright.sync_api import expect

from employees.demo import load_demo_workforce
from employees.models import Employee, Team
from tasks.loop import run_task
from tasks.services import task_create
from tests.browser.test_directory_browser import _log_in
from tests.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_task_page_shows_steps_as_they_happen_and_the_result(page, live_server, settings):
    settings.OPENAI_API_KEY = ""  # offline mode: the SOP is followed literally
    load_demo_workforce()
    user = UserFactory(username="lee")
    MembershipFactory(team=Team.objects.get(name="IT Operations"), user=user, role="approver")
    nia = Employee.objects.get(handle="nia-access")
    task, _ = task_create(
        employee=nia,
        title="Access to billing",
        input="Sam wants billing access.",
        urgent=True,
        dispatch=False,
    )
    _log_in(page, live_server, "lee")
    page.goto(f"{live_server.url}/tasks/{task.pk}/")
    expect(page.locator(".task-summary [data-status]")).to_have_text("Queued")
    expect(page.get_by_text("No steps yet")).to_be_visible()
    page.evaluate("window.__noReload = true")

    worker = threading.Thread(target=lambda: (run_task(task.pk), connections.close_all()))
    worker.start()
    worker.join(timeout=30)

    # The trace polls itself: the escalation and its steps appear without a reload.
    expect(page.locator(".task-summary [data-status]")).to_have_text("Escalated", timeout=10_000)
    # The question is shown once, in its card; the trace step links to it.
    expect(page.locator("#escalations .escalation-summary")).to_contain_text(
        "Access request needs a decision"
    )
    expect(page.locator("li.step-escalation a[href^='#escalation-']")).to_be_visible()
    expect(page.get_by_text("offline engine", exact=False).first).to_be_visible()
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path="test-artifacts/task-page.png", full_page=True)


def test_a_person_of_another_team_gets_not_found(page, live_server, transactional_db):
    load_demo_workforce()
    outsider = UserFactory(username="outsider")
    MembershipFactory(team=Team.objects.get(name="Customer Support"), user=outsider)
    task, _ = task_create(
        employee=Employee.objects.get(handle="rex-it-ops"),
        title="Secret",
        input="x",
        dispatch=False,
    )
    _log_in(page, live_server, "outsider")
    response = page.goto(f"{live_server.url}/tasks/{task.pk}/")
    assert response.status == 404


# --- honest pages: failed steps, parked pages that stop polling, decisions from the page --------

FETCH_SOP = [
    {"text": "Read the request."},
    {
        "text": "Fetch the order status.",
        "tool": {
            "name": "http_request",
            "arguments": {"method": "GET", "url": "http://127.0.0.1:9/"},
        },
    },
]
SEND_SOP = [
    {
        "text": "Reply to the customer.",
        "tool": {
            "name": "send_email",
            "arguments": {
                "to": ["ann@example.com"],
                "subject": "Your order",
                "body": "On its way.",
            },
        },
    },
]


def _watch(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def _count_requests(page, path: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.url.split("?")[0].endswith(path) else None)
    return seen


@pytest.fixture
def ops(transactional_db, settings):
    settings.OPENAI_API_KEY = ""  # offline mode: the SOPs are followed literally
    load_demo_workforce()
    user = UserFactory(username="lee", first_name="Lee", last_name="Park")
    MembershipFactory(team=Team.objects.get(name="IT Operations"), user=user, role="approver")
    return user


def _employee_with(sop, grants):
    from employees.models import ToolGrant

    rex = Employee.objects.get(handle="rex-it-ops")
    rex.sop = sop
    rex.save()
    for name, scope, policy in grants:
        ToolGrant.objects.update_or_create(
            employee=rex, tool_name=name, defaults={"scope": scope, "policy": policy}
        )
    return rex


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_a_failed_step_is_done_with_errors_highlighted(browser, live_server, ops, viewport):
    rex = _employee_with(
        FETCH_SOP,
        [("http_request", {"allowed_hosts": ["127.0.0.1"], "allowed_methods": ["GET"]}, "auto")],
    )
    task, _ = task_create(
        employee=rex, title="Order A-1002", input="Where is A-1002?", urgent=True, dispatch=False
    )
    run_task(task.pk)
    width, height = viewport
    context = browser.new_context(
        viewport={"width": width, "height": height}, is_mobile=width < 500
    )
    page = context.new_page()
    problems = _watch(page)
    try:
        _log_in(page, live_server, "lee")
        page.goto(f"{live_server.url}/tasks/{task.pk}/")
        expect(page.locator(".task-summary [data-status]")).to_have_text("Done with errors")
        failed = page.locator("li.step-failed")
        expect(failed).to_have_count(1)
        expect(failed).to_contain_text("http_request failed")
        expect(page.locator("pre.final-answer")).to_contain_text("was not completed: step 2")
        page.locator("[data-failed-steps] a").first.click()
        expect(page).to_have_url(re.compile(r"#step-\d+$"))
        expect(page.get_by_role("link", name="Rex")).to_have_attribute(
            "href", "/employees/rex-it-ops/"
        )
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"the task page scrolls sideways ({scroll}px at {width}px)"
        page.screenshot(path=f"test-artifacts/task-page-failed-{width}.png", full_page=True)
        assert problems == []
    finally:
        context.close()


def test_a_waiting_task_stops_polling_and_is_decided_from_its_page(page, live_server, ops):
    from approvals.models import ApprovalRequest

    rex = _employee_with(
        SEND_SOP, [("send_email", {"allowed_domains": ["example.com"]}, "needs_approval")]
    )
    task, _ = task_create(
        employee=rex, title="Tell Ann", input="Tell Ann it ships.", urgent=True, dispatch=False
    )
    run_task(task.pk)
    approval = ApprovalRequest.objects.get(task=task)
    problems = _watch(page)
    _log_in(page, live_server, "lee")
    polls = _count_requests(page, f"/tasks/{task.pk}/")
    page.goto(f"{live_server.url}/tasks/{task.pk}/")
    expect(page.locator(".task-summary [data-status]")).to_have_text("Waiting for approval")
    page.evaluate("window.__noReload = true")
    loaded = len(polls)
    page.wait_for_timeout(3000)
    assert len(polls) == loaded, "a waiting task's page kept polling"

    card = page.locator(f"#task-approvals #approval-{approval.pk}")
    expect(card).to_be_visible()
    expect(
        page.locator("#task-approvals").get_by_role("link", name="Open in the inbox")
    ).to_have_attribute("href", re.compile(rf"#approval-{approval.pk}$"))
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(f"#approval-{approval.pk} .decision")).to_contain_text("Approved")
    # The decision refreshes the trace: the task is queued again and the page follows it live.
    expect(page.locator(".task-summary [data-status]")).to_have_text(re.compile("Queued|Running"))
    worker = threading.Thread(target=lambda: (run_task(task.pk), connections.close_all()))
    worker.start()
    worker.join(timeout=30)
    expect(page.locator(".task-summary [data-status]")).to_have_text("Done", timeout=10_000)
    assert page.evaluate("window.__noReload") is True
    assert problems == []


def test_the_escalation_is_shown_once_and_the_page_stops_polling(page, live_server, ops):
    nia = Employee.objects.get(handle="nia-access")
    task, _ = task_create(
        employee=nia, title="Access", input="Sam wants billing access.", urgent=True, dispatch=False
    )
    run_task(task.pk)
    problems = _watch(page)
    _log_in(page, live_server, "lee")
    polls = _count_requests(page, f"/tasks/{task.pk}/")
    page.goto(f"{live_server.url}/tasks/{task.pk}/")
    expect(page.locator(".task-summary [data-status]")).to_have_text("Escalated")
    expect(page.get_by_text("Access request needs a decision", exact=False)).to_have_count(1)
    loaded = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == loaded
    assert problems == []


def test_waiting_for_working_hours_says_when_on_a_phone(browser, live_server, ops):
    from datetime import time

    from employees.models import WorkingWindow

    rex = Employee.objects.get(handle="rex-it-ops")
    Employee.objects.filter(pk=rex.pk).update(always_on=False, timezone="Europe/Berlin")
    WorkingWindow.objects.filter(employee=rex).delete()
    WorkingWindow.objects.create(employee=rex, weekday=6, start=time(3), end=time(3, 1))
    rex.refresh_from_db()
    task, _ = task_create(employee=rex, title="Later", input="When you can.")
    task.refresh_from_db()
    if task.status != "waiting_hours":
        pytest.skip("inside the one-minute window right now")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    problems = _watch(page)
    try:
        _log_in(page, live_server, "lee")
        page.goto(f"{live_server.url}/tasks/{task.pk}/")
        expect(page.locator("[data-resumes]")).to_contain_text(
            re.compile(r"Work resumes Sun \d+ \w+ 03:00 Europe/Berlin")
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert problems == []
    finally:
        context.close()
