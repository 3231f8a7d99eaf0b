"""Writing and verifying the audit trail."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from aiworkforce.models import ActorType, AuditEntry

GENESIS_HASH = "0" * 64
# Any number, as long as nothing else in the project takes the same advisory lock.
_AUDIT_CHAIN_LOCK = 7_100_200_300

_ACTION_RE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
# Whole words inside a key name: "api_key" and "access_token" match, "tokens_in" does not.
_SECRET_KEY_RE = re.compile(
    r"(^|[_-])(pass(word)?|passwd|secret|token|api[_-]?key|credentials?|authorization|signature)"
    r"($|[_-])",
    re.I,
)


@dataclass(frozen=True)
class Actor:
    """Who did something: a person, an AI employee, or the system itself."""

    type: str
    label: str
    user_id: int | None = None
    employee_id: int | None = None

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(type=ActorType.SYSTEM, label=label)

    @classmethod
    def for_user(cls, user) -> Actor:
        if user is None or not getattr(user, "is_authenticated", False):
            return cls.system()
        return cls(type=ActorType.USER, label=user.get_username(), user_id=user.pk)

    @classmethod
    def for_employee(cls, employee) -> Actor:
        return cls(type=ActorType.EMPLOYEE, label=f"@{employee.handle}", employee_id=employee.pk)


def redact(data: Any) -> Any:
    """Replace the values of secret-looking keys, so credentials never reach the audit trail."""
    if isinstance(data, dict):
        return {
            key: "[redacted]" if _SECRET_KEY_RE.search(str(key)) else redact(value)
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact(item) for item in data]
    return data


def audit_log(
    *,
    action: str,
    actor: Actor,
    subject: models.Model | None = None,
    data: dict | None = None,
) -> AuditEntry:
    """Append one entry to the hash chain, inside the caller's transaction."""
    if not _ACTION_RE.match(action):
        raise ValueError(
            f"audit action must be namespaced like 'employee.activated', got {action!r}"
        )
    # Round-trip through JSON so the hash is computed over exactly what the database returns.
    clean_data = json.loads(json.dumps(redact(data or {}), cls=DjangoJSONEncoder))
    # No savepoint: inside a caller's transaction the entry commits or rolls back with it.
    # The chain lock is held until that commit, so callers write audit entries last.
    with transaction.atomic(savepoint=False):
        # Serialise writers: each entry must see its predecessor's hash (one round trip).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s), "
                "(SELECT hash FROM aiworkforce_auditentry ORDER BY id DESC LIMIT 1)",
                [_AUDIT_CHAIN_LOCK],
            )
            last = cursor.fetchone()[1]
        entry = AuditEntry(
            created_at=timezone.now(),
            action=action,
            actor_type=actor.type,
            actor_user_id=actor.user_id,
            actor_employee_id=actor.employee_id,
            actor_label=actor.label[:200],
            subject_type=subject._meta.label_lower if subject is not None else "",
            subject_id=str(subject.pk) if subject is not None else "",
            subject_label=str(subject)[:300] if subject is not None else "",
            data=clean_data,
            prev_hash=last or GENESIS_HASH,
        )
        entry.hash = entry.compute_hash()
        entry.save()
    return entry


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


def audit_chain_breaks(*, batch_size: int = 2000) -> Iterator[ChainBreak | int]:
    """Walk the chain in order; yield a running count per batch and a ChainBreak per defect."""
    expected_prev = GENESIS_HASH
    checked = 0
    last_id = 0
    while True:
        batch = list(AuditEntry.objects.filter(id__gt=last_id).order_by("id")[:batch_size])
        if not batch:
            return
        for entry in batch:
            if entry.prev_hash != expected_prev:
                yield ChainBreak(entry.id, "its previous-hash does not match the entry before it")
            if entry.compute_hash() != entry.hash:
                yield ChainBreak(entry.id, "its content does not match its hash (altered)")
            expected_prev = entry.hash
            last_id = entry.id
        checked += len(batch)
        yield checked
