"""In a real browser: the office floor follows the work live, and stops asking when hidden."""

from __future__ import annotations

import re
import threading
import time

import pytest
from django.db import connections
from playwright.sync_api import expect

from aiworkforce.audit import Actor
from employees.demo import load_demo_workforce
from employees.models import Employee, Team
from employees.services import employee_pause
from tasks.loop import run_task
from tasks.services import task_create
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def manager(transactional_db, settings):
    settings.OPENAI_API_KEY = ""  # offline mode: the SOPs are followed literally
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
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def _log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/office/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label(re.compile("Username|Login", re.I)).fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Sign In", re.I)).click()
    expect(page.get_by_role("heading", name="Office", exact=True)).to_be_visible()


def _desk(page, handle: str):
    return page.locator(f'.desk[data-handle="{handle}"]')


def _in_background(fn) -> None:
    """Run `fn` as a worker would, on its own connection, and wait for it."""
    worker = threading.Thread(target=lambda: (fn(), connections.close_all()))
    worker.start()
    worker.join(timeout=30)


def _set_visibility(page, state: str) -> None:
    page.evaluate(
        """state => {
            Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
            Object.defineProperty(document, "hidden", {configurable: true, get: () => state === "hidden"});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


def test_desks_follow_the_work_without_reload(page, live_server, manager):
    errors = _watch_console(page)
    _log_in(page, live_server, "morgan")
    teams = page.locator(".floor-team h2").all_inner_texts()
    assert any(t.startswith("IT Operations") for t in teams) and len(teams) == Team.objects.count()
    nia = _desk(page, "nia-access")
    expect(nia.locator(".desk-label")).to_have_text("Idle")
    expect(nia.get_by_text("Shadow")).to_be_visible()  # a badge in words, not only a colour
    page.evaluate("window.__noReload = true")

    task, _ = task_create(
        employee=Employee.objects.get(handle="nia-access"),
        title="Access to billing",
        input="Sam wants billing access.",
        urgent=True,
        dispatch=False,
    )
    expect(nia.locator(".desk-label")).to_have_text(f"About to start #{task.pk}")
    expect(page.locator("#floor-summary")).to_contain_text("1 with work queued")
    _in_background(lambda: run_task(task.pk))
    expect(nia.locator(".desk-label")).to_have_text(f"Escalated #{task.pk} to a person")
    expect(page.locator("#floor-summary")).to_contain_text("1 escalated")

    # Each desk links to its task and to the employee's profile.
    link = nia.get_by_role("link", name=f"Task #{task.pk}: Access to billing")
    assert link.get_attribute("href") == f"/tasks/{task.pk}/"
    assert nia.get_by_role("link", name="Nia").get_attribute("href") == "/employees/nia-access/"
    assert page.evaluate("window.__noReload") is True

    # Refreshes keep a keyboard user's place and do not re-announce an unchanged summary.
    nia.get_by_role("link", name="Nia").focus()
    page.evaluate(
        """() => {
            window.__summaryChanges = 0;
            new MutationObserver(() => window.__summaryChanges++).observe(
                document.getElementById("floor-summary"),
                {childList: true, characterData: true, subtree: true});
        }"""
    )
    for _ in range(2):  # two refreshes, swapped in
        with page.expect_response(lambda r: "/office/" in r.url):
            pass
    page.wait_for_timeout(200)
    assert page.evaluate("document.activeElement.textContent") == "Nia"
    assert page.evaluate("window.__summaryChanges") == 0
    # Several desks share a row at 1,280 px, and nothing scrolls sideways.
    boxes = [d.bounding_box() for d in page.locator(".desk").all()[:2]]
    assert boxes[0]["y"] == boxes[1]["y"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.screenshot(path="test-artifacts/office-floor.png", full_page=True)
    assert errors == []


def test_a_hidden_tab_stops_polling_and_catches_up_when_shown(page, live_server, manager):
    errors = _watch_console(page)
    _log_in(page, live_server, "morgan")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/office/" in r.url else None)
    with page.expect_request(lambda r: "/office/" in r.url, timeout=6_000):
        pass  # it polls while visible
    _set_visibility(page, "hidden")
    page.wait_for_timeout(500)  # a request in flight when the tab was hidden may still land
    requests.clear()
    ava = Employee.objects.get(handle="ava-support")
    employee_pause(employee=ava, actor=Actor.system("tests"), reason="Error streak: 5 failures.")
    page.wait_for_timeout(7_000)  # more than two polling intervals
    assert requests == [], f"a hidden floor still polled: {requests}"
    expect(_desk(page, "ava-support").locator(".desk-label")).not_to_have_text("Paused")

    started = time.monotonic()
    with page.expect_request(lambda r: "/office/" in r.url, timeout=2_000):
        _set_visibility(page, "visible")
    assert time.monotonic() - started < 2  # at once, not at the next tick
    expect(_desk(page, "ava-support").locator(".desk-label")).to_have_text("Paused")
    expect(_desk(page, "ava-support")).to_contain_text("Error streak: 5 failures.")
    assert errors == []


def test_the_floor_is_one_column_on_a_phone(browser, live_server, manager):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        errors = _watch_console(page)
        _log_in(page, live_server, "morgan")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the floor scrolls sideways on a phone ({width}px wide)"
        desks = page.locator(".desk").all()
        assert len(desks) == Employee.objects.exclude(status="offboarded").count()
        lefts = {round(desk.bounding_box()["x"]) for desk in desks}
        assert len(lefts) == 1, f"desks are not in one column: {lefts}"
        expect(page.locator("#floor-summary")).to_be_visible()
        page.screenshot(path="test-artifacts/office-phone.png", full_page=True)
        assert errors == []
    finally:
        context.close()


def test_a_person_sees_only_the_desks_of_their_teams(page, live_server, transactional_db):
    load_demo_workforce()
    user = UserFactory(username="lee")
    MembershipFactory(team=Team.objects.get(name="IT Operations"), user=user, role="viewer")
    _log_in(page, live_server, "lee")
    handles = page.locator(".desk").evaluate_all("desks => desks.map(d => d.dataset.handle)")
    assert sorted(handles) == ["nia-access", "rex-it-ops"]
