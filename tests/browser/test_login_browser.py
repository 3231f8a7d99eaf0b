"""In a real browser: the back office is reached only through allauth's login and its MFA stage."""

from __future__ import annotations

import re
import time

import pytest
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
)
from playwright.sync_api import expect

from tests.browser.test_directory_browser import _log_in
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def boss(transactional_db) -> tuple:
    """A superuser who has an authenticator app."""
    user = UserFactory(username="boss", is_staff=True, is_superuser=True)
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return user, secret


def _code(secret: str) -> str:
    """The current code, never one about to expire before the server checks it."""
    if time.time() % 30 > 25:
        time.sleep(30 - time.time() % 30 + 0.1)
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def _sign_in_with_password(page, username: str) -> None:
    page.get_by_label(re.compile("Username|Login", re.I)).fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Sign In", re.I)).click()


def _code_stage_holds_then_opens_with_the_code(page, live_server, secret: str) -> None:
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/"))
    expect(page.get_by_role("heading", name="Two-Factor Authentication")).to_be_visible()
    # The password alone opens nothing: the back office sends us back to the code stage.
    page.goto(f"{live_server.url}/admin/")
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/"))
    expect(page.get_by_role("heading", name="Run the workforce")).to_have_count(0)
    page.goto(f"{live_server.url}/admin/login/")
    expect(page).to_have_url(re.compile(r"/accounts/2fa/authenticate/"))
    page.locator('input[name="code"]').fill(_code(secret))
    page.get_by_role("button", name=re.compile("Sign In", re.I)).click()
    expect(page).to_have_url(f"{live_server.url}/admin/")
    expect(page.get_by_role("heading", name="Run the workforce")).to_be_visible()


def test_anonymous_visitor_of_the_back_office_ends_on_the_allauth_login(page, live_server, boss):
    _, secret = boss
    page.goto(f"{live_server.url}/admin/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/admin/")
    expect(page.locator('input[name="login"]')).to_be_visible()
    _sign_in_with_password(page, "boss")
    _code_stage_holds_then_opens_with_the_code(page, live_server, secret)


def test_signed_in_person_cannot_become_staff_at_the_admin_login_without_the_code(
    page, live_server, boss
):
    _, secret = boss
    UserFactory(username="nobody")
    _log_in(page, live_server, "nobody")
    page.goto(f"{live_server.url}/admin/login/")
    expect(
        page.get_by_text("You are signed in as nobody, who has no access to the back office.")
    ).to_be_visible()
    expect(page.locator('input[type="password"]')).to_have_count(0)
    # Even a hand-made post of the staff user's password to the admin login changes nothing.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    page.request.post(
        f"{live_server.url}/admin/login/",
        form={"username": "boss", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{live_server.url}/admin/login/"},
    )
    page.goto(f"{live_server.url}/admin/")
    expect(page.get_by_text("You are signed in as nobody")).to_be_visible()
    expect(page.get_by_role("heading", name="Run the workforce")).to_have_count(0)
    page.get_by_role("button", name="Sign out and sign in as another user").click()
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/admin/")
    _sign_in_with_password(page, "boss")
    _code_stage_holds_then_opens_with_the_code(page, live_server, secret)
