"""Login through django-allauth at /accounts/, and TOTP enrolment that is then enforced."""

from __future__ import annotations

import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.urls import reverse

from tests.conftest import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def _current_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def _log_in(client, user):
    return client.post(reverse("account_login"), {"login": user.username, "password": PASSWORD})


def test_password_login_lands_on_the_directory(client):
    user = UserFactory()
    response = _log_in(client, user)
    assert response.status_code == 302 and response["Location"] == reverse("employees:directory")
    assert client.get(reverse("employees:directory")).status_code == 200


def test_wrong_password_is_refused_with_a_message(client):
    user = UserFactory()
    response = client.post(reverse("account_login"), {"login": user.username, "password": "nope"})
    assert response.status_code == 200
    assert "not correct" in response.text
    assert client.get(reverse("employees:directory")).status_code == 302


def test_open_signup_is_closed_by_default(client):
    response = client.get(reverse("account_signup"))
    assert "Sign Up Closed" in response.text
    login_page = client.get(reverse("account_login")).text
    assert "sign up" not in login_page.lower()
    assert "Accounts are created by your workforce managers" in login_page


def test_user_enrols_totp_and_is_asked_for_a_code_next_time(client):
    user = UserFactory()
    _log_in(client, user)
    page = client.get(reverse("mfa_activate_totp"), follow=True)
    if page.redirect_chain:  # allauth asks for the password again before a security change
        assert page.redirect_chain[-1][0].startswith(reverse("account_reauthenticate"))
        client.post(page.redirect_chain[-1][0], {"password": PASSWORD})
        page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    assert "Authenticator code" in page.text
    secret = client.session[SECRET_SESSION_KEY]
    wrong = client.post(reverse("mfa_activate_totp"), {"code": "000000"})
    assert "Incorrect code" in wrong.text
    response = client.post(reverse("mfa_activate_totp"), {"code": _current_code(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()

    client.post(reverse("account_logout"))
    response = _log_in(client, user)
    assert response.status_code == 302 and response["Location"] == reverse("mfa_authenticate")
    # Password alone is not enough: the directory is still closed.
    assert client.get(reverse("employees:directory")).status_code == 302
