"""In a real browser: text that cannot be stored is refused with a message the person sees."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from aiworkforce.audit import Actor
from employees.memory.services import memory_remember
from employees.models import MemoryEntry, MemoryKind
from tests.browser.test_directory_browser import _log_in
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_nul_character_in_an_inline_edit_is_refused_with_a_visible_message(page, live_server):
    support = TeamFactory(name="Support")
    ava = EmployeeFactory(name="Ava", handle="ava", team=support)
    MembershipFactory(team=support, user=UserFactory(username="morgan"), role="manager")
    memory = memory_remember(
        kind=MemoryKind.FACT, text="Acme renews in March.", actor=Actor.system("t"), employee=ava
    )
    _log_in(page, live_server, "morgan")
    page.goto(f"{live_server.url}/employees/ava/memory/")
    row = page.locator("#memory-list .memory-row").filter(has_text="Acme renews")
    row.get_by_role("button", name="Edit").click()
    # Pasted from a binary file: a NUL no one can see.
    row.locator("textarea").evaluate("box => { box.value = 'Acme renews in April.\\u0000'; }")
    row.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("cannot be stored because of the NUL character (U+0000)")
    expect(alert).to_contain_text("“text”")
    memory.refresh_from_db()
    assert memory.text == "Acme renews in March."
    assert MemoryEntry.objects.count() == 1
