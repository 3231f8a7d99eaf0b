"""Signed inbound webhooks: real Standard Webhooks requests through the test client."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection
from django.urls import reverse
from standardwebhooks import Webhook

import tasks.admin_webhooks  # noqa: F401  (registered here until tasks/admin.py imports it)
from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from aiworkforce.secrets import decrypt_secret, encrypt_secret
from employees.models import Employee, EmployeeStatus
from employees.services import employee_offboard
from tasks.models import Task, TaskSource, WebhookDelivery, WebhookEndpoint
from tasks.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_disable,
    webhook_endpoint_rotate_secret,
    webhook_receive,
)
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("tests")
EVENT = json.dumps({"type": "order.created", "order": 42}).encode()


@pytest.fixture
def hook() -> tuple[WebhookEndpoint, str]:
    return webhook_endpoint_create(
        employee=EmployeeFactory(handle="clerk"), name="Orders", actor=SYSTEM
    )


def _url(endpoint: WebhookEndpoint) -> str:
    return reverse("webhooks:webhook_receive", kwargs={"key": endpoint.key})


def _signed(secret: str, body: bytes, *, msg_id: str = "msg_1", at: datetime | None = None):
    at = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


def _post(client, endpoint, secret, body: bytes = EVENT, **signing):
    headers = _signed(secret, body, **signing)
    return client.post(_url(endpoint), body, content_type="application/json", headers=headers)


def _assert_nothing_created() -> None:
    assert not Task.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert not AuditEntry.objects.filter(action="webhook.received").exists()


def test_valid_delivery_creates_one_webhook_task_without_login(client, hook):
    endpoint, secret = hook
    response = _post(client, endpoint, secret)
    assert response.status_code == 202
    task = Task.objects.get()
    assert response.json() == {"task": task.pk, "status": task.status}
    assert task.input == EVENT.decode()
    assert task.source == TaskSource.WEBHOOK
    assert task.title == "order.created"
    assert task.employee == endpoint.employee
    assert task.idempotency_key == f"webhook:{endpoint.pk}:msg_1"
    assert WebhookDelivery.objects.get().task == task
    entry = AuditEntry.objects.get(action="webhook.received")
    assert entry.data["webhook_id"] == "msg_1" and entry.data["task"] == task.pk


def test_title_comes_from_title_or_subject_else_the_endpoint_name(client, hook):
    endpoint, secret = hook
    _post(client, endpoint, secret, json.dumps({"subject": "Refund", "type": "x"}).encode())
    _post(client, endpoint, secret, b"plain text event", msg_id="msg_2")
    _post(client, endpoint, secret, b'{"title": 7}', msg_id="msg_3")
    titles = set(Task.objects.values_list("title", flat=True))
    assert titles == {"Refund", "Webhook Orders"}


def test_same_webhook_id_again_returns_the_first_task_and_creates_nothing(client, hook):
    endpoint, secret = hook
    first = _post(client, endpoint, secret).json()
    response = _post(client, endpoint, secret)
    assert response.status_code == 200
    assert response.json() == {"task": first["task"], "status": first["status"], "duplicate": True}
    assert Task.objects.count() == 1 and WebhookDelivery.objects.count() == 1


def test_same_webhook_id_at_another_endpoint_is_a_new_delivery(client, hook):
    endpoint, secret = hook
    other, other_secret = webhook_endpoint_create(
        employee=endpoint.employee, name="Other", actor=SYSTEM
    )
    assert _post(client, endpoint, secret).status_code == 202
    assert _post(client, other, other_secret).status_code == 202
    assert Task.objects.count() == 2


def test_bad_signature_is_refused(client, hook):
    endpoint, _ = hook
    forged = "whsec_" + "A" * 43 + "="
    response = _post(client, endpoint, forged)
    assert response.status_code == 401
    assert "webhook-signature does not match" in response.json()["error"]
    _assert_nothing_created()


def test_malformed_signature_is_refused(client, hook):
    endpoint, secret = hook
    headers = _signed(secret, EVENT) | {"webhook-signature": "garbage"}
    response = client.post(_url(endpoint), EVENT, content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert "'v1,<base64 signature>'" in response.json()["error"]
    _assert_nothing_created()


def test_missing_headers_are_named(client, hook):
    endpoint, secret = hook
    headers = _signed(secret, EVENT)
    del headers["webhook-signature"], headers["webhook-timestamp"]
    response = client.post(_url(endpoint), EVENT, content_type="application/json", headers=headers)
    assert response.status_code == 400
    assert "webhook-timestamp, webhook-signature" in response.json()["error"]
    _assert_nothing_created()


def test_replayed_delivery_with_a_ten_minute_old_timestamp_is_refused(client, hook):
    endpoint, secret = hook
    response = _post(client, endpoint, secret, at=datetime.now(UTC) - timedelta(minutes=10))
    assert response.status_code == 401
    error = response.json()["error"]
    assert "too old" in error and "300 seconds" in error
    _assert_nothing_created()


def test_timestamp_beyond_the_tolerance_in_the_future_is_refused(client, hook):
    endpoint, secret = hook
    response = _post(client, endpoint, secret, at=datetime.now(UTC) + timedelta(minutes=10))
    assert response.status_code == 401
    assert "too new" in response.json()["error"]
    _assert_nothing_created()


def test_non_numeric_timestamp_is_a_bad_request(client, hook):
    endpoint, secret = hook
    headers = _signed(secret, EVENT) | {"webhook-timestamp": "yesterday"}
    response = client.post(_url(endpoint), EVENT, content_type="application/json", headers=headers)
    assert response.status_code == 400
    assert "Unix seconds" in response.json()["error"]


def test_body_over_the_cap_is_refused_before_and_after_reading(client, hook, settings):
    endpoint, secret = hook
    settings.WEBHOOK_MAX_BYTES = 10
    response = _post(client, endpoint, secret)
    assert response.status_code == 413
    assert "at most 10" in response.json()["error"]
    status, _ = webhook_receive(key=endpoint.key, body=EVENT, headers=_signed(secret, EVENT))
    assert status == 413
    _assert_nothing_created()


def test_unknown_and_disabled_endpoints_look_the_same(client, hook):
    endpoint, secret = hook
    unknown = WebhookEndpoint(key="00000000-0000-4000-8000-000000000000")
    response = _post(client, unknown, secret)
    assert response.status_code == 404
    webhook_endpoint_disable(endpoint=endpoint, actor=SYSTEM)
    disabled = _post(client, endpoint, secret)
    assert disabled.status_code == 404
    assert (
        disabled.json()
        == response.json()
        == {"error": "No enabled webhook endpoint at this address."}
    )
    _assert_nothing_created()


def test_offboarded_employee_answers_gone(client, hook):
    endpoint, secret = hook
    # Offboarding through the service disables the endpoints too (next test); this is an
    # employee whose status changed while its endpoint was still enabled.
    Employee.objects.filter(pk=endpoint.employee_id).update(status=EmployeeStatus.OFFBOARDED)
    response = _post(client, endpoint, secret)
    assert response.status_code == 410
    assert "has been offboarded" in response.json()["error"]
    _assert_nothing_created()


def test_offboarding_disables_the_endpoint(client, hook):
    endpoint, secret = hook
    employee_offboard(employee=endpoint.employee, actor=SYSTEM)
    assert _post(client, endpoint, secret).status_code == 404
    _assert_nothing_created()


def test_invalid_utf8_body_is_a_bad_request(client, hook):
    endpoint, secret = hook
    headers = _signed(secret, b"placeholder")
    response = client.post(
        _url(endpoint), b"\xff\xfe bad", content_type="text/plain", headers=headers
    )
    assert response.status_code == 400
    assert "UTF-8" in response.json()["error"]
    _assert_nothing_created()


def test_empty_body_is_a_bad_request(client, hook):
    endpoint, secret = hook
    response = _post(client, endpoint, secret, b"  ")
    assert response.status_code == 400
    assert "empty" in response.json()["error"]
    _assert_nothing_created()


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_are_not_allowed_with_a_one_line_reason(client, hook, method):
    endpoint, _ = hook
    response = getattr(client, method)(_url(endpoint))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    error = response.json()["error"]
    assert "\n" not in error and error.startswith(f"{method.upper()} is not accepted here")
    assert "POST" in error


# --- what PostgreSQL cannot store, and other hostile bodies ---------------------------------------


def test_a_nul_character_in_the_body_is_refused_with_what_to_do(client, hook):
    endpoint, secret = hook
    response = _post(client, endpoint, secret, b'{"type": "order.created", "note": "a\x00b"}')
    assert response.status_code == 400
    error = response.json()["error"]
    assert "NUL character (U+0000) at position 36" in error
    assert "\\u0000" in error  # escape it in JSON instead
    _assert_nothing_created()


def test_a_lone_surrogate_encoded_in_the_body_is_refused_as_not_utf8(client, hook):
    endpoint, secret = hook
    headers = _signed(secret, b"placeholder")
    body = b'{"type": "x", "note": "\xed\xa0\x80"}'
    response = client.post(_url(endpoint), body, content_type="application/json", headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "at position 23 encode a lone UTF-16 surrogate (U+D800)" in error
    assert error.startswith("The body must be UTF-8 text")
    _assert_nothing_created()


def test_invalid_utf8_is_refused_naming_the_byte_and_its_position(client, hook):
    endpoint, secret = hook
    headers = _signed(secret, b"placeholder")
    response = client.post(
        _url(endpoint), b"caf\xe9 ok", content_type="text/plain", headers=headers
    )
    assert response.status_code == 400
    assert "byte 0xe9 at position 3 is not valid UTF-8" in response.json()["error"]
    _assert_nothing_created()


@pytest.mark.parametrize(
    ("body", "title"),
    [
        (b'{"title": "\\u0000", "subject": "Refund"}', "Refund"),
        (b'{"title": "\\ud800 broken"}', "Webhook Orders"),
        (b"[" * 100_000 + b"]" * 100_000, "Webhook Orders"),
    ],
    ids=["escaped-nul-title", "escaped-surrogate-title", "nested-too-deep"],
)
def test_json_the_body_keeps_verbatim_while_the_title_skips_what_cannot_be_stored(
    client, hook, body, title
):
    endpoint, secret = hook
    response = _post(client, endpoint, secret, body)
    assert response.status_code == 202, response.json()
    task = Task.objects.get()
    assert task.input == body.decode() and task.title == title


def test_a_nul_in_the_webhook_id_is_refused(client, hook):
    endpoint, secret = hook
    response = _post(client, endpoint, secret, msg_id="msg\x001")
    assert response.status_code == 400
    assert "webhook-id" in response.json()["error"] and "U+0000" in response.json()["error"]
    _assert_nothing_created()


FUZZ_BODIES = {
    "nul-only": b"\x00",
    "nul-at-the-end": EVENT + b"\x00",
    "surrogate-pair-as-cesu8": b"\xed\xa0\xbd\xed\xb8\x80",
    "truncated-utf8": "é".encode()[:1],
    "overlong-utf8": b"\xc0\xaf",
    "bom-only": b"\xef\xbb\xbf",
    "just-whitespace": b" \t\r\n ",
    "at-the-cap": b"x" * (256 * 1024),
    "one-over-the-cap": b"x" * (256 * 1024 + 1),
    "escaped-everything": json.dumps({"title": "\x00\ud800", "s": "\udfff" * 50}).encode(),
    "control-characters": bytes(range(1, 32)),
}


@pytest.mark.parametrize("name", FUZZ_BODIES)
def test_fuzzed_bodies_get_an_answer_never_a_500(hook, name):
    from django.test import Client

    endpoint, secret = hook
    body = FUZZ_BODIES[name]
    client = Client(raise_request_exception=False)
    try:
        headers = _signed(secret, body)
    except UnicodeDecodeError:  # not UTF-8: it is refused before the signature is checked
        headers = _signed(secret, b"placeholder")
    response = client.post(_url(endpoint), body, content_type="application/json", headers=headers)
    assert response.status_code < 500, response.content
    assert "\n" not in response.json().get("error", "")
    if response.status_code == 202:
        task = Task.objects.get()
        assert task.input == body.decode().strip()
    else:
        assert response.json()["error"]
        _assert_nothing_created()


def test_secret_is_stored_encrypted_and_decrypts_back(hook):
    _, secret = hook
    assert secret.startswith("whsec_")
    stored = WebhookEndpoint.objects.values_list("secret_encrypted", flat=True).get()
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    assert decrypt_secret(stored) == secret


def test_field_encryption_key_is_used_and_a_malformed_one_is_named(settings):
    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()
    token = encrypt_secret("hello")
    assert Fernet(settings.FIELD_ENCRYPTION_KEY).decrypt(token.encode()) == b"hello"
    settings.FIELD_ENCRYPTION_KEY = "not-a-key"
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY"):
        encrypt_secret("hello")


def test_secret_and_signature_never_reach_the_audit_trail(client, hook):
    endpoint, secret = hook
    headers = _signed(secret, EVENT)
    client.post(_url(endpoint), EVENT, content_type="application/json", headers=headers)
    new_secret = webhook_endpoint_rotate_secret(endpoint=endpoint, actor=SYSTEM)
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"webhook.created", "webhook.received", "webhook.rotated"} <= actions
    trail = json.dumps(list(AuditEntry.objects.values("data", "subject_label", "actor_label")))
    for needle in (secret, new_secret, headers["webhook-signature"].split(",")[1]):
        assert needle.removeprefix("whsec_") not in trail


def test_rotating_the_secret_makes_old_signatures_fail(client, hook):
    endpoint, old_secret = hook
    new_secret = webhook_endpoint_rotate_secret(endpoint=endpoint, actor=SYSTEM)
    assert new_secret != old_secret
    assert _post(client, endpoint, old_secret).status_code == 401
    assert _post(client, endpoint, new_secret).status_code == 202


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_with_the_same_id_create_one_task():
    endpoint, secret = webhook_endpoint_create(
        employee=EmployeeFactory(), name="Race", actor=SYSTEM
    )
    barrier, results = threading.Barrier(2), []

    def deliver() -> None:
        try:
            barrier.wait()
            headers = _signed(secret, EVENT, msg_id="msg_race")
            results.append(webhook_receive(key=endpoint.key, body=EVENT, headers=headers))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in results) == [200, 202]
    assert {payload["task"] for _, payload in results} == {Task.objects.get().pk}
    assert WebhookDelivery.objects.count() == 1


def test_admin_creates_an_endpoint_and_shows_the_secret_once(admin_client):
    employee = EmployeeFactory()
    response = admin_client.post(
        reverse("admin:tasks_webhookendpoint_add"),
        {"name": "Tickets", "employee": employee.pk, "urgent": "on"},
        follow=True,
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.urgent and endpoint.employee == employee
    [shown] = [str(m) for m in response.context["messages"] if "Secret: whsec_" in str(m)]
    secret = shown.split("Secret: ")[1].split(" ")[0]
    assert decrypt_secret(endpoint.secret_encrypted) == secret
    assert _url(endpoint) in shown
    page = admin_client.get(reverse("admin:tasks_webhookendpoint_change", args=[endpoint.pk]))
    assert secret not in page.text and endpoint.secret_encrypted not in page.text
    assert AuditEntry.objects.get(action="webhook.created").actor_label == "boss"


def test_admin_actions_rotate_and_disable(admin_client, hook):
    endpoint, old_secret = hook
    changelist = reverse("admin:tasks_webhookendpoint_changelist")
    response = admin_client.post(
        changelist, {"action": "rotate_secret", "_selected_action": [endpoint.pk]}, follow=True
    )
    [shown] = [str(m) for m in response.context["messages"] if "Secret: whsec_" in str(m)]
    endpoint.refresh_from_db()
    assert decrypt_secret(endpoint.secret_encrypted) in shown and old_secret not in shown
    admin_client.post(changelist, {"action": "disable", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert admin_client.get(changelist).status_code == 200


def test_deliveries_are_read_only_in_the_admin(admin_client, client, hook):
    endpoint, secret = hook
    _post(client, endpoint, secret)
    delivery = WebhookDelivery.objects.get()
    assert admin.site._registry[WebhookDelivery].has_add_permission(None) is False
    url = reverse("admin:tasks_webhookdelivery_change", args=[delivery.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(reverse("admin:tasks_webhookdelivery_changelist")).status_code == 200


def test_endpoint_for_an_offboarded_employee_is_refused():
    employee = EmployeeFactory(status=EmployeeStatus.OFFBOARDED)
    with pytest.raises(ValidationError, match="offboarded"):
        webhook_endpoint_create(employee=employee, name="Late", actor=SYSTEM)
