"""Signed inbound webhooks (Standard Webhooks): each delivery becomes one task, exactly once.

A sender signs `<webhook-id>.<webhook-timestamp>.<body>` with the endpoint's `whsec_` secret
(https://www.standardwebhooks.com/). The secret is stored encrypted and shown to a manager once.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from aiworkforce.audit import Actor, audit_log
from aiworkforce.secrets import SecretDecryptionError, decrypt_secret, encrypt_secret
from aiworkforce.storable import json_loads_bounded, storable_problem
from employees.models import Employee, EmployeeStatus
from tasks.models import TaskSource, WebhookDelivery, WebhookEndpoint
from tasks.services import TaskRefused, task_create

logger = logging.getLogger(__name__)

REQUIRED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# The window standardwebhooks enforces (hard-coded in Webhook.verify); we check it first
# ourselves only to tell the sender which way its clock is off.
TOLERANCE_SECONDS = 5 * 60
# Leaves room for "webhook:<endpoint pk>:" in the task's 200-character idempotency key.
MAX_WEBHOOK_ID_LENGTH = 150
TITLE_FIELDS = ("title", "subject", "type")
NOT_FOUND = "No enabled webhook endpoint at this address."

Result = tuple[int, dict[str, Any]]


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_endpoint_create(
    *, employee: Employee, name: str, actor: Actor, urgent: bool = False
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint for an employee; returns it and its plaintext secret (show it once)."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("A webhook endpoint needs a name.")
    if employee.status == EmployeeStatus.OFFBOARDED:
        raise ValidationError(f"{employee.name} has been offboarded and takes no new webhooks.")
    secret = _new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            employee=employee,
            name=name,
            key=uuid.uuid4(),
            secret_encrypted=encrypt_secret(secret),
            urgent=urgent,
        )
        audit_log(
            action="webhook.created",
            actor=actor,
            subject=endpoint,
            data={"employee": employee.handle, "name": name, "urgent": urgent},
        )
    return endpoint, secret


def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint, actor: Actor) -> str:
    """Replace an endpoint's secret (the old one stops working at once); returns the new one."""
    secret = _new_secret()
    with transaction.atomic():
        if not WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            secret_encrypted=encrypt_secret(secret)
        ):
            raise WebhookEndpoint.DoesNotExist(f"Webhook endpoint {endpoint.pk} no longer exists.")
        audit_log(action="webhook.rotated", actor=actor, subject=endpoint, data={})
    endpoint.refresh_from_db(fields=["secret_encrypted"])
    return secret


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, actor: Actor) -> bool:
    """Stop accepting deliveries at an endpoint; False when it was already disabled."""
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(enabled=False)
        if changed:
            audit_log(action="webhook.disabled", actor=actor, subject=endpoint, data={})
    endpoint.enabled = False
    return bool(changed)


def _error(status: int, message: str) -> Result:
    return status, {"error": message}


def _too_large(size: int) -> Result:
    return _error(
        413,
        f"The body is {size} bytes; this endpoint accepts at most {settings.WEBHOOK_MAX_BYTES}.",
    )


def _timestamp_problem(raw: str) -> Result | None:
    try:
        sent = int(raw)
    except ValueError:
        return _error(400, f"webhook-timestamp must be whole Unix seconds, got {raw[:40]!r}.")
    skew = sent - int(time.time())
    window = f"the allowed window is {TOLERANCE_SECONDS} seconds either side of this server's clock"
    if skew < -TOLERANCE_SECONDS:
        return _error(
            401,
            f"webhook-timestamp is too old ({-skew} seconds behind); {window}. Replayed "
            "deliveries are refused: sign every retry again with a fresh timestamp.",
        )
    if skew > TOLERANCE_SECONDS:
        return _error(
            401,
            f"webhook-timestamp is too new ({skew} seconds ahead); {window}. Check the "
            "sender's clock.",
        )
    return None


def _title(text: str, endpoint: WebhookEndpoint) -> str:
    try:
        event = json_loads_bounded(text)
    except ValueError:
        event = None
    if isinstance(event, dict):
        for field in TITLE_FIELDS:
            value = event.get(field)
            # A JSON escape may decode to what cannot be stored ("\u0000"): the body itself is
            # kept verbatim, so only this derived title passes over such a value.
            if isinstance(value, str) and value.strip() and not storable_problem(value):
                return value
    return f"Webhook {endpoint.name}"


def _utf8_problem(body: bytes) -> Result | None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        at, bad = exc.start, body[exc.start : exc.start + 3]
        if len(bad) == 3 and bad[0] == 0xED and 0xA0 <= bad[1] <= 0xBF:
            code = ((bad[0] & 0x0F) << 12) | ((bad[1] & 0x3F) << 6) | (bad[2] & 0x3F)
            what = (
                f"the bytes at position {at} encode a lone UTF-16 surrogate (U+{code:04X}), "
                "which UTF-8 does not allow (encode a character beyond U+FFFF as one 4-byte "
                "sequence, not as a surrogate pair)"
            )
        else:
            what = f"byte 0x{body[at]:02x} at position {at} is not valid UTF-8 ({exc.reason})"
        return _error(400, f"The body must be UTF-8 text: {what}. The delivery was not accepted.")
    return None


def _nul_problem(body: bytes) -> Result | None:
    at = body.find(b"\x00")
    if at < 0:
        return None
    return _error(
        400,
        f"The body contains the NUL character (U+0000) at position {at}, which cannot be "
        "stored. Remove it, or send it escaped inside a JSON string (\\u0000); the delivery "
        "was not accepted.",
    )


def _duplicate(delivery: WebhookDelivery) -> Result:
    task = delivery.task
    return 200, {
        "task": task.pk if task else None,
        "status": task.status if task else None,
        "duplicate": True,
    }


def webhook_receive(*, key: uuid.UUID | str, body: bytes, headers: Mapping[str, str]) -> Result:
    """Verify one delivery and turn it into one task; returns (HTTP status, JSON payload)."""
    if len(body) > settings.WEBHOOK_MAX_BYTES:
        return _too_large(len(body))
    try:
        endpoint = WebhookEndpoint.objects.select_related("employee").get(key=key, enabled=True)
    except (WebhookEndpoint.DoesNotExist, ValidationError):
        return _error(404, NOT_FOUND)

    headers = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
    if missing:
        return _error(
            400,
            f"Missing Standard Webhooks header(s): {', '.join(missing)}. Sign each request as "
            "described at https://www.standardwebhooks.com/.",
        )
    webhook_id = headers["webhook-id"]
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
        return _error(400, f"webhook-id must be at most {MAX_WEBHOOK_ID_LENGTH} characters.")
    if problem := storable_problem(webhook_id):
        return _error(400, f"webhook-id cannot be stored because of {problem}; send a plain id.")
    if problem := _timestamp_problem(headers["webhook-timestamp"]):
        return problem
    if problem := _utf8_problem(body):
        return problem
    text = body.decode("utf-8")

    try:
        secret = decrypt_secret(endpoint.secret_encrypted)
    except SecretDecryptionError:
        logger.error("webhook endpoint %s: its secret cannot be decrypted", endpoint.pk)
        return _error(
            500,
            "This endpoint cannot verify signatures right now; ask its owner to rotate its secret.",
        )
    try:
        Webhook(secret).verify(text, headers, json_parse=False)
    except WebhookVerificationError as exc:
        if "timestamp" in str(exc):  # crossed the window's edge since our own check
            return _error(401, f"webhook-timestamp is outside the {TOLERANCE_SECONDS}s window.")
        return _error(
            401,
            "webhook-signature does not match. Sign '<webhook-id>.<webhook-timestamp>.<body>' "
            "with HMAC-SHA256 keyed by the base64-decoded part of the whsec_ secret after the "
            "prefix; after a rotation, use the new secret.",
        )
    except ValueError:  # a signature entry that is not "v1,<base64>"
        return _error(
            401, "webhook-signature must be space-separated 'v1,<base64 signature>' entries."
        )

    if not text.strip():
        return _error(400, "The body is empty; send the event as the request body.")
    # PostgreSQL text cannot hold NUL: refused (not stripped), so a task holds what was sent.
    if problem := _nul_problem(body):
        return problem
    return _deliver(endpoint=endpoint, webhook_id=webhook_id, text=text)


def _deliver(*, endpoint: WebhookEndpoint, webhook_id: str, text: str) -> Result:
    employee = endpoint.employee
    try:
        with transaction.atomic():
            # The delivery row is claimed first: a concurrent delivery with the same id blocks
            # on its unique constraint until ours commits, then gets our row (and our task).
            delivery, created = WebhookDelivery.objects.get_or_create(
                endpoint=endpoint, webhook_id=webhook_id
            )
            if not created:
                return _duplicate(delivery)
            task, _ = task_create(
                employee=employee,
                title=_title(text, endpoint),
                input=text,
                source=TaskSource.WEBHOOK,
                urgent=endpoint.urgent,
                idempotency_key=f"webhook:{endpoint.pk}:{webhook_id}",
            )
            delivery.task = task
            delivery.save(update_fields=["task"])
            audit_log(
                action="webhook.received",
                actor=Actor.system(f"webhook {endpoint.name}"),
                subject=endpoint,
                data={"webhook_id": webhook_id, "task": task.pk, "body_preview": text[:200]},
            )
    except TaskRefused as exc:
        # Offboarding is final (410); a draft employee may be activated later (409).
        status = 410 if employee.status == EmployeeStatus.OFFBOARDED else 409
        return _error(status, str(exc))
    except ValidationError as exc:
        return _error(400, " ".join(exc.messages))
    return 202, {"task": task.pk, "status": task.status}


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return 0  # the actual length is checked once the body is read


@csrf_exempt
@login_not_required
def webhook_receive_view(request: HttpRequest, key: uuid.UUID) -> JsonResponse:
    """Receive one signed delivery (authenticated by its signature, not a login)."""
    if request.method != "POST":
        # Not require_POST: its 405 has an empty body, and a sender's log should say why.
        response = JsonResponse(
            {
                "error": f"{request.method} is not accepted here: deliver each event as a "
                "signed POST (Standard Webhooks)."
            },
            status=405,
        )
        response["Allow"] = "POST"
        return response
    declared = _declared_length(request)
    if declared > settings.WEBHOOK_MAX_BYTES:
        status, payload = _too_large(declared)  # refused before reading the body
    else:
        status, payload = webhook_receive(key=key, body=request.body, headers=request.headers)
    return JsonResponse(payload, status=status)
