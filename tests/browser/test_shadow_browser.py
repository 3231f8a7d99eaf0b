"""In a real browser: a manager reads a shadow employee's report, records what they did with a
proposal, and promotes it to active after the confirm step, at 1,280 px and on a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from approvals.services import escalation_answer
from employees.demo import load_demo_workforce
from employees.models import Employee, EmployeeStatus, Team, ToolPolicy
from tests.evaluations.test_shadow import _escalation, _proposal
from tests.factories import PASSWORD, MembershipFactory, ToolGrantFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def manager(transactional_db):
    load_demo_workforce()
    user = UserFactory(username="morgan", first_name="Morgan", last_name="Lee")
    for team in Team.objects.all():
        MembershipFactory(team=team, user=user, role="manager")
    return user


@pytest.fixture
def nia(manager, model_server):
    """The demo's shadow employee, with an escalation followed, one overruled, one proposal."""
    employee = Employee.objects.get(handle="nia-access")
    assert employee.status == EmployeeStatus.SHADOW
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        policy=ToolPolicy.AUTO,
        scope={"allowed_domains": ["example.com"]},
    )
    followed = _escalation(model_server, employee)
    escalation_answer(escalation=followed, user=manager, chosen_option="Replace it")
    overruled = _escalation(model_server, employee)
    escalation_answer(escalation=overruled, user=manager, chosen_option="Refund")
    _proposal(model_server, employee)
    return employee


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
    assert scroll <= width, f"the page scrolls sideways at {width}px ({scroll}px wide)"


def _journey(page, live_server, width: int) -> None:
    errors = _watch_console(page)
    _log_in(page, live_server, "morgan")
    page.goto(f"{live_server.url}/employees/nia-access/")
    page.evaluate("window.__noReload = true")
    page.get_by_role("button", name="Promote to active…").click()
    confirm = page.locator("[data-promote]")
    expect(confirm.get_by_role("heading", name="Promote Nia to active?")).to_be_visible()
    expect(confirm.locator("[data-promote-rate]")).to_have_text("50%")
    expect(confirm.locator("[data-promote-diverged]")).to_have_text("1")
    expect(confirm.locator("tr[data-week]")).to_have_count(8)
    assert page.evaluate("window.__noReload") is True  # the confirm step is a swap
    assert Employee.objects.get(handle="nia-access").status == EmployeeStatus.SHADOW
    _no_sideways_scroll(page, width)
    table_right, panel_right = confirm.evaluate(
        "panel => [panel.querySelector('table').getBoundingClientRect().right,"
        " panel.getBoundingClientRect().right]"
    )
    assert table_right <= panel_right, "the weeks table sticks out of the confirm panel"
    page.screenshot(path=f"test-artifacts/shadow-promote-{width}.png", full_page=True)

    confirm.get_by_role("link", name="Read the full shadow report").click()
    expect(page.get_by_role("heading", name=re.compile("Shadow report: Nia"))).to_be_visible()
    case = page.locator(".shadow-case")
    expect(case).to_have_count(1)
    expect(case.locator(".side.proposed")).to_contain_text("Recommended “Replace it”")
    expect(case.locator(".side.person")).to_contain_text("Chose “Refund”")
    _no_sideways_scroll(page, width)

    proposal = page.locator(".shadow-proposal")
    expect(proposal).to_contain_text("Proposed send_email")
    proposal.get_by_label(re.compile("What I did instead")).fill("Phoned Ann instead.")
    proposal.get_by_role("button", name="I did something else").click()
    expect(page.locator("[data-diverged]")).to_have_text("2")
    expect(page.get_by_text("No proposal waits to be compared.")).to_be_visible()
    expect(page.locator(".shadow-case .person-text").first).to_have_text("“Phoned Ann instead.”")
    _no_sideways_scroll(page, width)
    page.screenshot(path=f"test-artifacts/shadow-report-{width}.png", full_page=True)

    page.goto(f"{live_server.url}/employees/nia-access/")
    page.get_by_role("button", name="Promote to active…").click()
    expect(page.locator("[data-promote-rate]")).to_have_text("33%")
    page.get_by_role("button", name="Yes, promote to active").click()
    expect(page.locator("[data-status]")).to_have_text("Active")
    assert Employee.objects.get(handle="nia-access").status == EmployeeStatus.ACTIVE
    assert errors == [], errors


def test_manager_reads_the_shadow_report_and_promotes(page, live_server, nia):
    _journey(page, live_server, 1280)


def test_shadow_report_and_promotion_work_on_a_phone(browser, live_server, nia):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        _journey(page, live_server, 390)
    finally:
        context.close()
