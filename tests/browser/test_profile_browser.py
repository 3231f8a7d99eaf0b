"""In a real browser: a manager opens a profile from the directory, assigns a task, pauses and
resumes the employee, at desktop width and on a phone, with no console errors."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aiworkforce.audit import Actor
from employees.demo import load_demo_workforce
from employees.models import Employee, EmployeeStatus, Team
from employees.services import employee_update
from tasks.models import TaskSource
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def manager(transactional_db):
    load_demo_workforce()
    user = UserFactory(username="morgan", first_name="Morgan", last_name="Lee")
    for team in Team.objects.all():
        MembershipFactory(team=team, user=user, role="manager")
    return user


def _watch_console(page) -> list[str]:
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/employees/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label(re.compile("Username|Login", re.I)).fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Sign In", re.I)).click()
    expect(page.get_by_role("heading", name="Employee directory")).to_be_visible()


def _no_sideways_scroll(page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the profile scrolls sideways at {width}px ({scroll}px wide)"


def _journey(page, live_server, width: int) -> None:
    """Directory → Sam's profile → assign → pause with a reason → resume."""
    errors = _watch_console(page)
    sam = Employee.objects.get(handle="sam-followup")
    sam.golden_tasks.all().delete()  # with golden tasks a brief change would be a draft
    employee_update(employee=sam, actor=Actor.system("tests"), changes={"tone": "Short and kind."})
    _log_in(page, live_server, "morgan")
    page.locator('.employee-card[data-handle="sam-followup"]').get_by_role(
        "link", name="Sam"
    ).click()
    expect(page).to_have_url(re.compile(r"/employees/sam-followup/$"))
    expect(page.get_by_role("heading", name=re.compile(r"^Sam"))).to_be_visible()
    expect(page.locator("[data-hours]")).to_have_text("Always on — works 24/7")
    expect(page.get_by_role("heading", name="Tools")).to_be_visible()
    _no_sideways_scroll(page, width)

    page.evaluate("window.__noReload = true")
    page.get_by_label("Instructions").fill("Follow up with Bob about his quote.")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_role("status").filter(has_text="Assigned task #")).to_be_visible()
    task = sam.tasks.get()
    assert task.source == TaskSource.MANUAL and task.requested_by_user.username == "morgan"
    # The new task shows under "Doing now" without a reload (an out-of-band swap).
    expect(page.locator(f'#profile-now [data-task="{task.pk}"]')).to_be_visible()
    assert page.evaluate("window.__noReload") is True
    expect(page.get_by_label("Instructions")).to_have_value("")

    page.get_by_placeholder("Why pause? (optional)").fill("Checking its quotes.")
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.locator("[data-status-reason]")).to_have_text("Checking its quotes.")
    expect(page.locator("[data-status]")).to_have_text("Paused")
    expect(page.get_by_text("Sam is now paused.")).to_be_visible()
    assert Employee.objects.get(pk=sam.pk).status == EmployeeStatus.PAUSED
    _no_sideways_scroll(page, width)

    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator("[data-status]")).to_have_text("Active")
    assert Employee.objects.get(pk=sam.pk).status == EmployeeStatus.ACTIVE

    page.get_by_label("From version").select_option("1")
    page.get_by_label("To version").select_option("1")
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_text("Choose two different versions to compare.")).to_be_visible()
    page.get_by_label("To version").select_option("2")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#brief-diff ins")).to_contain_text("Short and kind.")
    _no_sideways_scroll(page, width)
    page.screenshot(path=f"test-artifacts/profile-{width}.png", full_page=True)
    assert errors == [], errors


def test_manager_opens_a_profile_assigns_pauses_and_resumes(page, live_server, manager):
    _journey(page, live_server, 1280)


def test_profile_works_on_a_phone(browser, live_server, manager):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        _journey(page, live_server, 390)
    finally:
        context.close()


def test_org_chart_links_the_profile_and_offboarding_asks_first(page, live_server, manager):
    errors = _watch_console(page)
    _log_in(page, live_server, "morgan")
    page.goto(f"{live_server.url}/employees/org/")
    page.locator('.org-member[data-handle="ivan-it"]').get_by_role("link", name="Ivan").click()
    expect(page).to_have_url(re.compile(r"/employees/ivan-it/$"))
    page.get_by_text("Offboard Ivan…").click()
    page.get_by_label("Reason (kept in its history)").fill("The role moved to another team.")
    page.get_by_role("button", name="Offboard", exact=True).click()
    # The browser itself refuses until the box is ticked; nothing changed.
    assert Employee.objects.get(handle="ivan-it").status == EmployeeStatus.ACTIVE
    page.get_by_label("Yes, offboard Ivan for good").check()
    page.get_by_role("button", name="Offboard", exact=True).click()
    expect(page.locator("[data-status]")).to_have_text("Offboarded")
    assert Employee.objects.get(handle="ivan-it").status == EmployeeStatus.OFFBOARDED
    assert errors == [], errors
