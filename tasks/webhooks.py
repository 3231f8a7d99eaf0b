"""Signed inbound webhooks (Standard Webhooks): each delivery becomes one task, exactly once.

A sender signs `<webhook-id>.<webhook-timestamp>.<body>` with the endpoint's `whsec_` secret
(https://www.standardwebhooks.com/). The secret is stored encrypted and shown to a manager once.
"""

from __future__ import annotations

import base64
import json
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
from django.views.decorators.http import require_POST
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from aiworkforce.audit import Actor, audit_log
from aiworkforce.secrets import SecretDecryptionError, decrypt_secret, encrypt_secret
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
        event = json.loads(text)
    except ValueError:
        event = None
    if isinstance(event, dict):
        for field in TITLE_FIELDS:
            if isinstance(event.get(field), str) and event[field].strip():
                return event[field]
    return f"Webhook {endpoint.name}"


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
    if problem := _timestamp_problem(headers["webhook-timestamp"]):
        return problem
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "The body must be UTF-8 text.")

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
@require_POST
def webhook_receive_view(request: HttpRequest, key: uuid.UUID) -> JsonResponse:
    """Receive one signed delivery (authenticated by its signature, not a login)."""
    declared = _declared_length(request)
    if declared > settings.WEBHOOK_MAX_BYTES:
        status, payload = _too_large(declared)  # refused before reading the body
    else:
        status, payload = webhook_receive(key=key, body=request.body, headers=request.headers)
    return JsonResponse(payload, status=status)
