"""Personal API tokens: the services (made, checked, revoked, audited, stored hashed) and the
page reached from Security (shown once, own tokens only, revoked over HTMX, CSRF-guarded)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from aiworkforce.api_tokens import (
    MAX_ACTIVE_TOKENS,
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
)
from aiworkforce.models import ApiToken, AuditEntry
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


@pytest.fixture
def ann():
    return UserFactory(username="ann")


def _log_in(client, user) -> None:
    """Signed in and, as allauth asks before a sensitive change, confirmed the password again."""
    client.force_login(user)
    response = client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    assert response.status_code == 302


# --- services -----------------------------------------------------------------------------------


def test_a_token_is_stored_only_as_its_hash_and_audited_without_its_secret(ann):
    token, plaintext = api_token_create(user=ann, name="Laptop IDE")
    assert plaintext.startswith("aiw_") and len(plaintext) > 40
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert token.prefix == plaintext[:12] and str(token) == f"Laptop IDE ({plaintext[:12]}…)"
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert not any(plaintext in str(value) for value in row.values())
    entry = AuditEntry.objects.get(action="api_token.created")
    assert entry.actor_user_id == ann.pk and entry.data == {
        "name": "Laptop IDE",
        "prefix": token.prefix,
    }
    assert plaintext not in json.dumps(entry.data) + entry.subject_label


def test_authentication_finds_the_owner_and_refuses_everything_else(ann):
    _, plaintext = api_token_create(user=ann, name="Laptop")
    assert api_token_authenticate(plaintext) == ann
    for wrong in ("", "aiw_", plaintext + "x", plaintext[:-1], "Bearer " + plaintext, "aiw_\ud800"):
        assert api_token_authenticate(wrong) is None
    ann.is_active = False
    ann.save(update_fields=["is_active"])
    assert api_token_authenticate(plaintext) is None


def test_last_used_is_written_at_most_once_a_minute(ann):
    token, plaintext = api_token_create(user=ann, name="Laptop")
    assert token.last_used_at is None
    api_token_authenticate(plaintext)
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    api_token_authenticate(plaintext)
    token.refresh_from_db()
    assert token.last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=5))
    api_token_authenticate(plaintext)
    token.refresh_from_db()
    assert token.last_used_at > first - timedelta(minutes=5)


def test_a_revoked_token_stops_working_and_revoking_twice_changes_nothing(ann):
    token, plaintext = api_token_create(user=ann, name="Laptop")
    assert api_token_revoke(token=token, user=ann) is True
    assert token.revoked_at is not None and api_token_authenticate(plaintext) is None
    assert api_token_revoke(token=token, user=ann) is False
    assert AuditEntry.objects.filter(action="api_token.revoked").count() == 1


def test_a_token_needs_a_name_and_there_is_a_ceiling(ann):
    with pytest.raises(ValidationError, match="Name the token"):
        api_token_create(user=ann, name="  ")
    with pytest.raises(ValidationError, match="NUL"):
        api_token_create(user=ann, name="a\x00b")
    for n in range(MAX_ACTIVE_TOKENS):
        api_token_create(user=ann, name=f"t{n}")
    with pytest.raises(ValidationError, match="revoke the ones you no longer use"):
        api_token_create(user=ann, name="one more")


# --- the page -----------------------------------------------------------------------------------


def test_the_security_page_links_to_the_tokens(client, ann):
    client.force_login(ann)
    page = client.get(reverse("mfa_index")).text
    assert "Personal API tokens" in page and reverse("mcp_server:tokens") in page
    assert "Authenticator App" in page  # allauth's own panels are still there


def test_the_page_needs_a_login(client):
    response = client.get(reverse("mcp_server:tokens"))
    assert response.status_code == 302 and reverse("account_login") in response["Location"]


def test_a_new_token_is_shown_once_with_how_to_connect_a_client(client, ann):
    _log_in(client, ann)
    response = client.post(reverse("mcp_server:token_create"), {"name": "Laptop IDE"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=ann)
    plaintext = response.context["plaintext"]
    assert api_token_authenticate(plaintext) == ann
    page = response.text
    assert "shown only this once" in page
    assert f"Authorization: Bearer {plaintext}" in page and "http://testserver/mcp/" in page
    assert '"env": {"AIW_API_TOKEN": "' + plaintext + '"}' in page
    listing = client.get(reverse("mcp_server:tokens")).text
    assert plaintext not in listing
    assert "Laptop IDE" in listing and token.prefix in listing and "last used" in listing


def test_making_a_token_asks_a_stale_session_to_sign_in_again(client, ann):
    client.force_login(ann)  # signed in, but not recently through a login form
    response = client.post(reverse("mcp_server:token_create"), {"name": "Laptop"})
    assert response.status_code == 302 and "reauthenticate" in response["Location"]
    assert not ApiToken.objects.exists()


def test_a_nameless_token_is_refused_on_the_page(client, ann):
    _log_in(client, ann)
    response = client.post(reverse("mcp_server:token_create"), {"name": ""})
    assert "Name the token" in response.text and not ApiToken.objects.exists()


def test_revoking_over_htmx_swaps_the_row(client, ann):
    token, plaintext = api_token_create(user=ann, name="Laptop")
    client.force_login(ann)
    response = client.post(reverse("mcp_server:token_revoke_hx", args=[token.pk]), headers=HX)
    assert response.status_code == 200
    assert f'id="token-{token.pk}"' in response.text and "Revoked" in response.text
    assert "<html" not in response.text
    assert api_token_authenticate(plaintext) is None


def test_revoking_without_htmx_goes_back_to_the_page(client, ann):
    token, _ = api_token_create(user=ann, name="Laptop")
    client.force_login(ann)
    response = client.post(reverse("mcp_server:token_revoke_hx", args=[token.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("mcp_server:tokens")


def test_someone_elses_token_is_404_and_stays_active(client, ann):
    token, plaintext = api_token_create(user=ann, name="Laptop")
    client.force_login(UserFactory(username="bob"))
    response = client.post(reverse("mcp_server:token_revoke_hx", args=[token.pk]), headers=HX)
    assert response.status_code == 404
    assert api_token_authenticate(plaintext) == ann
    assert f'id="token-{token.pk}"' not in client.get(reverse("mcp_server:tokens")).text


def test_revoking_needs_the_csrf_token(ann):
    token, plaintext = api_token_create(user=ann, name="Laptop")
    client = Client(enforce_csrf_checks=True)
    client.force_login(ann)
    url = reverse("mcp_server:token_revoke_hx", args=[token.pk])
    assert client.post(url, headers=HX).status_code == 403
    assert api_token_authenticate(plaintext) == ann
    page = client.get(reverse("account_reauthenticate"))  # any page that sets the cookie
    csrf = page.cookies["csrftoken"].value
    assert client.post(url, headers={**HX, "X-CSRFToken": csrf}).status_code == 200
    assert api_token_authenticate(plaintext) is None


def test_making_a_token_needs_the_csrf_token(ann):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ann)
    client.get(reverse("account_reauthenticate"))
    csrf = client.cookies["csrftoken"].value
    client.post(
        reverse("account_reauthenticate"), {"password": PASSWORD, "csrfmiddlewaretoken": csrf}
    )
    assert client.post(reverse("mcp_server:token_create"), {"name": "x"}).status_code == 403
    assert not ApiToken.objects.exists()
    response = client.post(
        reverse("mcp_server:token_create"), {"name": "x", "csrfmiddlewaretoken": csrf}
    )
    assert response.status_code == 200 and ApiToken.objects.count() == 1


# --- the back office ----------------------------------------------------------------------------


def test_the_back_office_lists_tokens_without_hashes_and_revokes_them(admin_client, ann):
    token, plaintext = api_token_create(user=ann, name="Laptop")
    changelist = reverse("admin:aiworkforce_apitoken_changelist")
    page = admin_client.get(changelist).text
    assert "Laptop" in page and token.prefix in page and token.token_hash not in page
    detail = admin_client.get(reverse("admin:aiworkforce_apitoken_change", args=[token.pk])).text
    assert token.token_hash not in detail
    admin_client.post(changelist, {"action": "revoke", "_selected_action": [token.pk]}, follow=True)
    assert api_token_authenticate(plaintext) is None
    entry = AuditEntry.objects.get(action="api_token.revoked")
    assert entry.actor_label == "boss" and entry.data["owner"] == ann.pk
    assert ApiToken.objects.get(pk=token.pk).revoked_at <= timezone.now()


def test_opening_the_page_asks_for_the_password_again_first(client, ann):
    client.force_login(ann)  # signed in, but not recently confirmed

    response = client.get(reverse("mcp_server:tokens"))

    assert response.status_code == 302 and "reauthenticate" in response["Location"]
