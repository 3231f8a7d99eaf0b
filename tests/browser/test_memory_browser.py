"""In a real browser: a manager searches an employee's memory, forgets a customer, uploads a file."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aiworkforce.audit import Actor
from employees.jobs import ingest_document
from employees.memory.recall import memory_recall
from employees.memory.services import memory_remember
from employees.models import DocumentStatus, KnowledgeDocument, MemoryEntry, MemoryKind
from tests.browser.test_directory_browser import _log_in
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ava(transactional_db):
    support = TeamFactory(name="Support")
    ava = EmployeeFactory(name="Ava", handle="ava", team=support)
    MembershipFactory(team=support, user=UserFactory(username="morgan"), role="manager")
    actor = Actor.system("tests")
    for kind, text in [
        (MemoryKind.FACT, "Acme Corp renews its contract every March."),
        (MemoryKind.FACT, "Acme's invoices go to billing@acme.example."),
        (MemoryKind.LESSON, "Always greet customers by their first name."),
        (MemoryKind.EPISODE, "Helped Globex reset a password."),
    ]:
        memory_remember(kind=kind, text=text, actor=actor, employee=ava)
    return ava


def _rows(page):
    return page.locator("#memory-list .memory-row")


def test_manager_searches_forgets_and_uploads_without_reloading(page, live_server, ava):
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm
    _log_in(page, live_server, "morgan")
    page.locator('.employee-card[data-handle="ava"]').get_by_role(
        "link", name="Memory", exact=True
    ).click()
    expect(page.get_by_role("heading", name="Ava\u2019s memory")).to_be_visible()
    expect(_rows(page)).to_have_count(4)
    page.evaluate("window.__noReload = true")

    # Text search, then the same words by meaning (with distances).
    page.get_by_role("searchbox").fill("invoices")
    expect(_rows(page)).to_have_count(1)
    expect(_rows(page).first).to_contain_text("billing@acme.example")
    page.get_by_label("Match").select_option("meaning")
    expect(page.locator("#memory-list .distance").first).to_be_visible()
    # One change at a time: the search box fires 300 ms after typing, so clearing
    # it together with the select would leave a late response that replaces the
    # list while the next step edits a row.
    page.get_by_label("Match").select_option("text")
    expect(page.locator("#memory-list .distance")).to_have_count(0)
    expect(_rows(page)).to_have_count(1)
    page.get_by_role("searchbox").fill("")
    expect(_rows(page)).to_have_count(4)

    # Correct a memory inline.
    lesson = _rows(page).filter(has_text="greet customers")
    lesson.get_by_role("button", name="Edit").click()
    lesson.locator("textarea").fill("Always greet customers by their first name, warmly.")
    lesson.get_by_role("button", name="Save").click()
    expect(page.locator("#memory-list")).to_contain_text("by their first name, warmly.")

    # Forget everything about Acme: review (all selected), keep one, confirm with a reason.
    page.get_by_label("Forget everything about").fill("Acme")
    page.get_by_role("button", name="Find").click()
    panel = page.locator("#forget-panel")
    expect(panel).to_contain_text("2 memories about “Acme”")
    boxes = panel.locator('input[name="selected"]')
    expect(boxes).to_have_count(2)
    assert all(boxes.nth(i).is_checked() for i in range(2))
    panel.locator("li", has_text="renews its contract").locator("input").uncheck()
    panel.get_by_label("Reason for forgetting").fill("Customer asked to be forgotten")
    panel.get_by_role("button", name="Forget selected").click()
    expect(panel).to_contain_text("Forgot 1 memory about “Acme”.")
    expect(_rows(page)).to_have_count(3)  # the list refreshed by itself
    expect(page.locator("#memory-list")).not_to_contain_text("billing@acme.example")
    recalled = memory_recall(employee=ava, query="Acme invoices billing", k=10)
    assert all("billing" not in r.text for r in recalled)

    # Upload a Markdown file: it waits with a progress bar until a worker reads it.
    page.locator("#upload-file").set_input_files(
        files=[
            {
                "name": "refunds.md",
                "mimeType": "text/markdown",
                "buffer": b"# Refunds\n## Eligibility\nRefunds within 30 days of purchase.",
            }
        ]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    row = page.locator(".document-row", has_text="refunds.md")
    expect(row).to_contain_text("Waiting to be read")
    expect(row.locator("progress")).to_be_visible()
    document = KnowledgeDocument.objects.get(title="refunds.md")
    assert ingest_document(document.pk) == "ready"  # what the worker does
    expect(row).to_contain_text("Ready")
    expect(row).to_contain_text("1 chunk in memory")
    expect(row.locator("progress")).to_have_count(0)
    expect(page.locator("#memory-list")).to_contain_text("Refunds \u203a Eligibility")
    expect(_rows(page)).to_have_count(4)

    # Delete one memory.
    episode = _rows(page).filter(has_text="Globex")
    episode.get_by_role("button", name="Delete").click()
    expect(episode).to_have_count(0)
    expect(page.locator("#memory-message")).to_have_text("Memory deleted.")
    assert not MemoryEntry.objects.filter(text__contains="Globex").exists()
    assert KnowledgeDocument.objects.get().status == DocumentStatus.READY
    assert page.evaluate("window.__noReload") is True


def test_memory_page_works_on_a_phone(browser, live_server, ava):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        _log_in(page, live_server, "morgan")
        page.goto(f"{live_server.url}/employees/ava/memory/")
        expect(_rows(page)).to_have_count(4)
        page.get_by_label("Forget everything about").fill("Acme")
        page.get_by_role("button", name="Find").click()
        expect(page.locator("#forget-panel")).to_contain_text("2 memories about “Acme”")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"page scrolls sideways on a phone ({width}px wide)"
        expect(page.get_by_role("button", name="Upload", exact=True)).to_be_visible()
        page.screenshot(path="test-artifacts/memory-phone.png", full_page=True)
    finally:
        context.close()


def test_a_viewer_sees_no_controls(page, live_server, ava):
    MembershipFactory(team=ava.team, user=UserFactory(username="vic"), role="viewer")
    _log_in(page, live_server, "vic")
    page.goto(f"{live_server.url}/employees/ava/memory/")
    expect(_rows(page)).to_have_count(4)
    expect(page.get_by_text("You can read this memory.")).to_be_visible()
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Export"))).to_have_count(0)
