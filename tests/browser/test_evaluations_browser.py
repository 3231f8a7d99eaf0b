"""In a real browser: a manager reads an employee's evaluations (the chart, the pass rate per brief
version, the failing cases) and opens a failing case's trace, at 1,280 px and on a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aiworkforce.audit import Actor
from employees.hiring.catalogue import template
from employees.hiring.services import template_hire_team
from employees.services import brief_version_draft
from evaluations.services import evaluation_run
from tests.factories import PASSWORD, MembershipFactory, TeamFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tess(transactional_db, settings):
    """Support triage hired from its template: v1 passes its three cases, a draft v2 without
    the reply step fails two of them (each with its trace)."""
    settings.OPENAI_API_KEY = ""  # the offline engine
    team = TeamFactory(name="Support")
    user = UserFactory(username="morgan", first_name="Morgan", last_name="Lee")
    MembershipFactory(team=team, user=user, role="manager")
    (employee,) = template_hire_team(
        specs=template("support-triage").employees, team=team, user=user
    ).employees
    for _ in range(2):
        assert evaluation_run(employee=employee, brief_version=1).passed == 3
    sop = [s for s in employee.sop if (s.get("tool") or {}).get("name") != "send_email"]
    brief_version_draft(
        employee=employee, actor=Actor.for_user(user), user=user, changes={"sop": sop}
    )
    assert evaluation_run(employee=employee, brief_version=2).passed == 1
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


def _no_sideways_scroll(page) -> None:
    scroll, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner, f"the page scrolls sideways at {inner}px ({scroll}px wide)"


def _chart_is_drawn(page) -> None:
    canvas = page.locator("canvas#eval-chart")
    expect(canvas).to_be_visible()
    drawn = page.evaluate(
        """() => {
          const canvas = document.getElementById("eval-chart");
          const chart = Chart.getChart(canvas);
          const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
          const box = canvas.getBoundingClientRect();
          return {width: box.width, height: box.height, painted,
                  series: chart ? chart.data.datasets.map(d => d.label) : null,
                  right: box.right, cardRight: canvas.closest(".card").getBoundingClientRect().right};
        }"""
    )
    assert drawn["width"] > 200 and drawn["height"] > 100, drawn
    assert drawn["series"] == ["v1", "v2"], drawn
    assert drawn["painted"] > 500, f"the chart's canvas is blank: {drawn}"
    assert drawn["right"] <= drawn["cardRight"] + 1, f"the chart sticks out of its card: {drawn}"


def _journey(page, live_server, tess, width: int) -> None:
    errors = _watch_console(page)
    _log_in(page, live_server, "morgan")
    page.goto(f"{live_server.url}/evaluations/{tess.handle}/")
    expect(page.get_by_role("heading", name="Evaluations of Tess")).to_be_visible()
    expect(page.get_by_text("3 golden tasks.")).to_be_visible()

    versions = page.locator(".eval-versions")
    expect(versions.locator("li[data-version='v1']")).to_contain_text("100%")
    expect(versions.locator("li[data-version='v1']")).to_contain_text("latest of 2 runs")
    expect(versions.locator("li[data-version='v2']")).to_contain_text("33%")
    expect(versions.locator("li[data-version='v2']")).to_contain_text("(1/3")
    _chart_is_drawn(page)

    page.get_by_text("Table: every run").click()
    rows = page.locator("#eval-runs tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("v2")
    expect(rows.first).to_contain_text("1/3")
    _no_sideways_scroll(page)

    failing = page.locator("li[data-failing]")
    expect(failing).to_have_count(2)
    case = failing.filter(has_text="Password reset question")
    expect(case).to_contain_text("expected a call of send_email")
    _no_sideways_scroll(page)
    page.screenshot(path=f"test-artifacts/evaluations-{width}.png", full_page=True)
    assert errors == [], errors

    case.get_by_role("link", name=re.compile(r"trace \(task #\d+\)")).click()
    expect(page.get_by_role("heading", name=re.compile("Password reset question"))).to_be_visible()
    expect(page.get_by_text(re.compile("recall")).first).to_be_visible()
    expect(page.get_by_text("Followed the standard operating procedure").first).to_be_visible()
    _no_sideways_scroll(page)
    page.screenshot(path=f"test-artifacts/evaluations-trace-{width}.png", full_page=True)
    assert errors == [], errors


def test_manager_reads_the_evaluations_and_a_failing_trace(page, live_server, tess):
    _journey(page, live_server, tess, 1280)


def test_evaluations_page_works_on_a_phone(browser, live_server, tess):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        _journey(page, live_server, tess, 390)
    finally:
        context.close()
