"""In a real browser: a manager hires from a role template, step by step, and the new hire
runs its first task (offline engine, shadow mode). The wall time is printed."""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.db import connections
from playwright.sync_api import expect

from employees.models import Employee, EmployeeStatus, TeamRole
from tasks.loop import run_task
from tasks.models import TaskStatus
from tasks.services import task_create
from tests.browser.test_directory_browser import _log_in
from tests.factories import MembershipFactory, TeamFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
STEPS = ["Tools", "SOP", "Working hours", "Budgets", "Duties", "Knowledge", "Review"]


@pytest.fixture
def manager(transactional_db):
    team = TeamFactory(name="Customer Support")
    user = UserFactory(username="morgan", first_name="Morgan", last_name="Lee")
    MembershipFactory(team=team, user=user, role=TeamRole.MANAGER)
    return user


def _watch_console(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


def _settled(page) -> None:
    """Wait until htmx has swapped and settled the form (its new fields are wired up)."""
    page.wait_for_function(
        "document.querySelector('#wizard') && !document.querySelector("
        "'.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')"
    )


def _next(page, expected: str) -> None:
    page.get_by_role("button", name="Next →").click()
    expect(page.locator("#wizard .stepper [aria-current=step]")).to_contain_text(expected)
    _settled(page)


def test_manager_hires_from_a_template_and_the_hire_runs_its_first_task(
    page, live_server, manager, settings
):
    settings.OPENAI_API_KEY = ""  # offline mode: the SOP is followed literally
    problems = _watch_console(page)
    _log_in(page, live_server, "morgan")
    started = time.monotonic()

    page.get_by_role("link", name="Hire an employee").click()
    expect(page.get_by_role("heading", name="Start from a role template")).to_be_visible()
    page.evaluate("window.__noReload = true")
    page.screenshot(path="test-artifacts/hire-catalogue.png", full_page=True)
    page.get_by_role("button", name="Use the Support triage template").click()
    expect(page.get_by_role("heading", name="Who are you hiring?")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Tia")
    page.get_by_label("Handle").fill("tia-triage")

    _next(page, "Tools")
    expect(page.get_by_label("Allowed domains")).to_have_value("example.com")  # a field, no JSON
    page.screenshot(path="test-artifacts/hire-tools.png", full_page=True)
    _next(page, "SOP")
    expect(page.locator(".sop-step")).to_have_count(5)
    page.screenshot(path="test-artifacts/hire-sop.png", full_page=True)
    first = page.locator(".sop-step").first
    first.get_by_label("Tool").select_option("send_email")  # swaps in that tool's arguments
    expect(page.locator(".sop-step").first.get_by_text("Arguments for send_email")).to_be_visible()
    _settled(page)
    page.locator(".sop-step").first.get_by_label("Tool").select_option("")
    expect(page.locator(".sop-step").first.get_by_text("Arguments for")).to_have_count(0)
    _settled(page)
    page.get_by_role("button", name="Move step 5 up").click()
    expect(page.locator(".sop-step").nth(3)).to_contain_text("Summarise the request")
    _settled(page)
    page.get_by_role("button", name="Move step 4 down").click()
    expect(page.locator(".sop-step").nth(4)).to_contain_text("Summarise the request")
    _settled(page)
    _next(page, "Working hours")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/London")
    page.screenshot(path="test-artifacts/hire-hours.png", full_page=True)
    _next(page, "Budgets")
    page.get_by_label("Most a task may cost ($)").fill("20")
    expect(page.locator("[data-budget-check]")).to_contain_text("more than the daily ceiling")
    page.get_by_role("button", name="Next →").click()  # refused, and says why
    expect(page.locator("#wizard-errors")).to_contain_text("Most a task may cost")
    page.get_by_label("Most a task may cost ($)").fill("0.50")
    _next(page, "Duties")
    cron = page.get_by_label(re.compile("Schedule"))
    cron.fill("0 8 * * 1-5")
    expect(page.locator("#cron-preview-0")).to_contain_text("Next five runs (Europe/London)")
    expect(page.locator("#cron-preview-0 li")).to_have_count(5)
    expect(page.locator("#cron-preview-0 li").first).to_contain_text("08:00")
    page.screenshot(path="test-artifacts/hire-duties.png", full_page=True)
    _next(page, "Knowledge")
    _next(page, "Review")
    expect(page.get_by_text("Before hiring, fix")).to_have_count(0)
    page.screenshot(path="test-artifacts/hire-review.png", full_page=True)
    page.get_by_role("button", name="Hire Tia").click()
    expect(page).to_have_url(re.compile(r"/employees/tia-triage/$"))
    hired_after = time.monotonic() - started

    tia = Employee.objects.get(handle="tia-triage")
    assert tia.status == EmployeeStatus.SHADOW
    assert tia.duties.get().cron == "0 8 * * 1-5"
    task, _ = task_create(
        employee=tia,
        title="Can't log in",
        input="From: jane@example.com\nSubject: Can't log in\n\nHow do I reset my password?",
        urgent=True,
        dispatch=False,
    )
    outcome: list = []
    worker = threading.Thread(
        target=lambda: (outcome.append(run_task(task.pk)), connections.close_all())
    )
    worker.start()
    worker.join(timeout=60)
    assert outcome == [TaskStatus.DONE]
    page.goto(f"{live_server.url}/tasks/{task.pk}/")
    expect(page.get_by_text("shadow mode", exact=False).first).to_be_visible()
    total = time.monotonic() - started
    print(
        f"\nHIRE WALL TIME: hired from a template in {hired_after:.1f}s; "
        f"first task done and shown in {total:.1f}s (goal: under 300 s for a person)"
    )
    assert total < 300
    assert not problems, problems


def test_the_hire_form_fits_a_phone(browser, live_server, manager):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    problems = _watch_console(page)
    try:
        _log_in(page, live_server, "morgan")
        page.goto(f"{live_server.url}/employees/hire/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.get_by_role(
            "button", name="Customise Cora (Onboarding coordinator (manager employee))"
        ).click()
        expect(page.get_by_role("heading", name="Who are you hiring?")).to_be_visible()
        for name in STEPS:
            _next(page, name)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the {name} step scrolls sideways on a phone ({width}px)"
        page.screenshot(path="test-artifacts/hire-phone.png", full_page=True)
        assert not problems, problems
    finally:
        context.close()


def test_a_person_who_manages_no_team_is_told_why(page, live_server, transactional_db):
    user = UserFactory(username="vic")
    MembershipFactory(team=TeamFactory(), user=user, role=TeamRole.VIEWER)
    _log_in(page, live_server, "vic")
    response = page.goto(f"{live_server.url}/employees/hire/")
    assert response.status == 403
    expect(page.get_by_text("Only a team's managers can hire into it")).to_be_visible()
