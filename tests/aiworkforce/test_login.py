"""Login through django-allauth at /accounts/, and TOTP enrolment that is then enforced."""

from __future__ import annotations

import time

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY, format_hotp_value, hotp_value
from django.urls import reverse

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def _current_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def _log_in(client, user):
    return client.post(reverse("account_login"), {"login": user.username, "password": PASSWORD})


def test_password_login_lands_on_the_directory(client):
    user = UserFactory()
    response = _log_in(client, user)
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:home")
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


# --- the back office has no login of its own: every way in goes through allauth and its MFA ------


def _totp_user(**fields):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    user = UserFactory(**fields)
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return user, secret


def test_anonymous_admin_ends_on_the_allauth_login_with_next(client):
    response = client.get("/admin/", follow=True)
    last_url = response.redirect_chain[-1][0]
    assert last_url == f"{reverse('account_login')}?next=/admin/"
    assert response.status_code == 200 and 'name="login"' in response.text
    response = client.get("/admin/login/?next=/admin/tasks/task/")
    assert response["Location"] == f"{reverse('account_login')}?next=/admin/tasks/task/"


def test_admin_login_never_takes_a_password(client):
    staff = UserFactory(username="boss", is_staff=True, is_superuser=True)
    response = client.post("/admin/login/", {"username": "boss", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert "_auth_user_id" not in client.session
    nobody = UserFactory(username="nobody")
    client.force_login(nobody)
    response = client.post("/admin/login/", {"username": staff.username, "password": PASSWORD})
    assert int(client.session["_auth_user_id"]) == nobody.pk  # still who they were


def test_signed_in_person_without_back_office_access_is_told_so_without_a_password_form(client):
    nobody = UserFactory(username="nobody")
    client.force_login(nobody)
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    assert response.redirect_chain[-1][0].startswith("/admin/login/")
    page = response.text
    assert "You are signed in as nobody, who has no access to the back office." in page
    assert 'type="password"' not in page and 'name="password"' not in page
    # Its one way on: sign out, then sign in as someone else through allauth (and its MFA).
    assert f'action="{reverse("account_logout")}"' in page
    assert f'name="next" value="{reverse("account_login")}?next=/admin/"' in page
    response = client.post(reverse("account_logout"), {"next": "/accounts/login/?next=/admin/"})
    assert response["Location"] == "/accounts/login/?next=/admin/"


def test_switching_to_a_staff_account_still_asks_for_its_authenticator_code(client):
    nobody = UserFactory(username="nobody")
    _, secret = _totp_user(username="boss", is_staff=True, is_superuser=True)
    client.force_login(nobody)
    client.post(reverse("account_logout"))
    response = client.post(
        f"{reverse('account_login')}?next=/admin/", {"login": "boss", "password": PASSWORD}
    )
    assert response["Location"].startswith(reverse("mfa_authenticate"))
    assert client.get("/admin/").status_code == 302  # the password alone opens nothing
    assert client.get("/admin/login/")["Location"].startswith(reverse("account_login"))
    if time.time() % 30 > 27:  # a code about to expire could be checked in the next window
        time.sleep(30 - time.time() % 30 + 0.1)
    response = client.post(reverse("mfa_authenticate"), {"code": _current_code(secret)})
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_signed_in_staff_is_sent_on_and_never_off_site(client):
    client.force_login(UserFactory(username="boss", is_staff=True))
    response = client.get("/admin/login/?next=/admin/tasks/task/")
    assert response["Location"] == "/admin/tasks/task/"
    response = client.get("/admin/login/?next=https://evil.example/")
    assert response["Location"] == reverse("admin:index")


def test_no_address_serves_a_password_login_outside_allauth():
    """Only allauth's login view takes a password (and it continues to the MFA stage)."""
    import inspect

    from allauth.account.views import LoginView as AllauthLoginView
    from django.contrib.admin import AdminSite
    from django.contrib.auth.views import LoginView
    from django.urls import get_resolver

    def callbacks(resolver, prefix=""):
        for pattern in resolver.url_patterns:
            if hasattr(pattern, "url_patterns"):
                yield from callbacks(pattern, prefix + str(pattern.pattern))
            else:
                view = pattern.callback  # class-based views carry view_class; unwrap the rest
                yield (
                    prefix + str(pattern.pattern),
                    view
                    if hasattr(view, "view_class")
                    else inspect.unwrap(view, stop=lambda f: hasattr(f, "__func__")),
                )

    password_views = [
        route
        for route, view in callbacks(get_resolver())
        if issubclass(getattr(view, "view_class", object), LoginView | AllauthLoginView)
        or getattr(view, "__func__", None) is AdminSite.login
    ]
    assert password_views == ["accounts/login/"]
