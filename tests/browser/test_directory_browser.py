"""In a real browser: a person logs in and filters the employee directory without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from employees.demo import load_demo_workforce
from employees.models import Team
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def manager(transactional_db):
    load_demo_workforce()
    user = UserFactory(username="morgan", first_name="Morgan", last_name="Lee")
    for team in Team.objects.all():
        MembershipFactory(team=team, user=user, role="manager")
    return user


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/employees/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label(re.compile("Username|Login", re.I)).fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Sign In", re.I)).click()
    expect(page.get_by_role("heading", name="Employee directory")).to_be_visible()


def _visible_handles(page) -> list[str]:
    return page.locator(".employee-card").evaluate_all("cards => cards.map(c => c.dataset.handle)")


def _expect_handles(page, handles: list[str]) -> None:
    """Wait until exactly these employees are listed (the list is swapped asynchronously)."""
    for handle in handles:
        expect(page.locator(f'.employee-card[data-handle="{handle}"]')).to_be_visible()
    expect(page.locator(".employee-card")).to_have_count(len(handles))


def test_person_logs_in_and_filters_the_directory_without_reload(page, live_server, manager):
    _log_in(page, live_server, "morgan")
    assert sorted(_visible_handles(page)) == [
        "ava-support",
        "fay-facilities",
        "hana-hr",
        "ivan-it",
        "nia-access",
        "olivia-onboarding",
        "rex-it-ops",
        "sam-followup",
    ]
    page.evaluate("window.__noReload = true")

    page.get_by_role("searchbox").fill("triage")
    _expect_handles(page, ["ava-support"])
    expect(page).to_have_url(re.compile(r"q=triage"))

    page.get_by_role("searchbox").fill("")
    page.get_by_label("Status").select_option("shadow")
    _expect_handles(page, ["nia-access"])

    page.get_by_label("Status").select_option("")
    page.get_by_label("Team").select_option(label="IT Operations")
    _expect_handles(page, ["nia-access", "rex-it-ops"])

    page.get_by_role("searchbox").fill("nobody-by-this-name")
    expect(page.get_by_text("No employee matches these filters.")).to_be_visible()
    assert page.evaluate("window.__noReload") is True  # every update was a swap, not a page load


def test_directory_works_on_a_phone(browser, live_server, manager):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        _log_in(page, live_server, "morgan")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"page scrolls sideways on a phone ({width}px wide)"
        expect(page.get_by_role("link", name="Directory")).to_be_visible()
        page.get_by_label("Status").select_option("active")
        _expect_handles(
            page,
            [
                "ava-support",
                "fay-facilities",
                "hana-hr",
                "ivan-it",
                "olivia-onboarding",
                "rex-it-ops",
                "sam-followup",
            ],
        )
        page.screenshot(path="test-artifacts/directory-phone.png", full_page=True)
    finally:
        context.close()


def test_person_without_a_team_sees_why_the_directory_is_empty(page, live_server, transactional_db):
    load_demo_workforce()
    UserFactory(username="newbie")
    _log_in(page, live_server, "newbie")
    expect(page.get_by_text("You are not a member of any team yet")).to_be_visible()
