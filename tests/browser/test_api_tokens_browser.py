"""In a real browser on a phone: a person makes a personal API token, sees it once, and revokes
it with HTMX; the revoked token no longer opens /mcp/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aiworkforce.models import ApiToken
from tests.browser.test_directory_browser import _log_in
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def _initialize(page, live_server, token: str):
    return page.request.post(
        f"{live_server.url}/mcp/",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        },
        data='{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": '
        '"2025-06-18", "capabilities": {}, "clientInfo": {"name": "browser-test", "version": "1"}}}',
    )


def test_a_token_is_made_shown_once_and_revoked_on_a_phone(page, live_server):
    UserFactory(username="dana")
    page.set_viewport_size(PHONE)
    _log_in(page, live_server, "dana")

    page.goto(f"{live_server.url}/accounts/tokens/")
    # Making a token is a sensitive change: the password is asked again first.
    expect(page.get_by_role("heading", name="Confirm Access")).to_be_visible()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.get_by_label("Name it after where you will use it").fill("Phone assistant")
    page.get_by_role("button", name="Make token").click()

    shown = page.locator("#new-token")
    expect(shown).to_be_visible()
    token = shown.input_value()
    assert token.startswith("aiw_")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert _initialize(page, live_server, token).status == 200

    page.goto(f"{live_server.url}/accounts/tokens/")  # shown once: not again
    expect(page.locator("#new-token")).to_have_count(0)
    assert token not in page.content()
    row = page.locator(".token-row", has_text="Phone assistant")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()

    expect(row.locator(".badge")).to_have_text(re.compile("Revoked"))
    assert ApiToken.objects.get(name="Phone assistant").revoked_at is not None
    assert _initialize(page, live_server, token).status == 401
