"""In a real browser: the back office's employee page fits 1,280 px, opens on what is read
every time, and says where a JSON mistake is."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from employees.demo import load_demo_workforce
from employees.models import Employee
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Elements whose content is wider than their box: clipped or scrolled sideways inside the page.
OVERFLOWING = """() => Array.from(document.querySelectorAll(
    '#content-main fieldset, #content-main .inline-group, #content-main .wrapper, #content-main .form-row'
  )).filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map(e => `${e.id || e.className}: ${e.scrollWidth} > ${e.clientWidth}`)"""


@pytest.fixture
def staff_page(page, live_server, transactional_db):
    """The page signed in as a superuser (a session made here: allauth's login is tested elsewhere)."""
    load_demo_workforce()
    UserFactory(username="boss", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(get_user_model().objects.get(username="boss"))
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.console_errors = errors
    return page


def _open_change_page(page, live_server, handle: str) -> None:
    employee = Employee.objects.get(handle=handle)
    page.goto(f"{live_server.url}/admin/employees/employee/{employee.pk}/change/")
    expect(page.get_by_role("heading", name="Change employee")).to_be_visible()


def test_employee_change_page_fits_1280_px_with_long_groups_collapsed(staff_page, live_server):
    page = staff_page
    _open_change_page(page, live_server, "ava-support")  # the most grants, a duty, windows
    collapsed = page.evaluate("document.documentElement.scrollHeight")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.evaluate(OVERFLOWING) == []
    # Long and rare groups start closed; identity, hours and budgets are open.
    for name in ["Brief", "Standard operating procedure", "Model", "Memory", "Lifecycle"]:
        assert not page.locator("details", has_text=name).first.evaluate("d => d.open"), name
    for name in ["Tool grants", "Duties", "Working windows", "Brief history (read-only)"]:
        summary = page.locator("details > summary", has_text=name)
        expect(summary).to_have_count(1)
    expect(page.get_by_label("Max cost per day")).to_be_visible()
    expect(page.get_by_label("Goals")).not_to_be_visible()

    # Everything opened: still no sideways scroll anywhere.
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    expect(page.get_by_label("Goals")).to_be_visible()
    expanded = page.evaluate("document.documentElement.scrollHeight")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.evaluate(OVERFLOWING) == []
    print(f"\nemployee change page at 1280 px: {collapsed} px collapsed, {expanded} px all open")
    assert collapsed < 2500
    page.screenshot(path="test-artifacts/admin-employee-change.png", full_page=True)
    assert page.console_errors == []


def test_a_bad_sop_json_is_shown_with_its_line_and_column(staff_page, live_server):
    page = staff_page
    _open_change_page(page, live_server, "ava-support")
    page.locator("summary", has_text="Standard operating procedure").click()
    page.get_by_label("Steps").fill('[\n  {"text": "Read the ticket"\n   "tool": null}\n]')
    page.get_by_role("button", name="Save and continue editing").click()
    error = page.locator(".field-sop .errorlist")
    expect(error).to_contain_text("Line 3, column 4: expected ',' or '}' after a value")
    # The group with the mistake is open, and the JSON is shown as typed.
    expect(page.get_by_label("Steps")).to_be_visible()
    assert '"Read the ticket"\n' in page.get_by_label("Steps").input_value()
    # The caret waits where the mistake is.
    expect(page.get_by_label("Steps")).to_be_focused()
    at = page.get_by_label("Steps").evaluate("b => b.value.slice(b.selectionStart).slice(0, 6)")
    assert at == '"tool"'

    page.get_by_label("Steps").fill('[{"text": "Read the ticket"}, {"tool": {"name": "recall"}}]')
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".field-sop .errorlist")).to_contain_text("SOP step 2: 'text' is required")
    assert page.console_errors == []


def test_admin_pages_have_a_favicon(staff_page, live_server):
    page = staff_page
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(f"{live_server.url}/admin/")
    expect(page.get_by_role("link", name="AI Workforce back office")).to_be_visible()
    href = page.locator('link[rel="icon"]').get_attribute("href")
    assert href and href.endswith("favicon.svg")
    assert page.request.get(f"{live_server.url}{href}").ok
    assert missing == []
    assert page.console_errors == []


def test_employee_change_page_works_on_a_phone(staff_page, live_server):
    page = staff_page
    page.set_viewport_size({"width": 390, "height": 844})
    _open_change_page(page, live_server, "ava-support")
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px wide)"
    # Only the tables of working windows and brief versions may scroll inside their own box.
    clipped = page.evaluate(OVERFLOWING)
    assert [c for c in clipped if not c.startswith("wrapper")] == []
    expect(page.get_by_label("Max cost per day")).to_be_visible()
    assert page.console_errors == []
