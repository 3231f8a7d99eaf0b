"""Writing and verifying the audit trail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models

from aiworkforce.models import ActorType, AuditEntry
from aiworkforce.storable import storable_dumps

GENESIS_HASH = "0" * 64

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


def _clean(action: str, data: dict | None) -> str:
    if not _ACTION_RE.match(action):
        raise ValueError(
            f"audit action must be namespaced like 'employee.activated', got {action!r}"
        )
    return storable_dumps(redact(data or {}), cls=DjangoJSONEncoder)


def _subject_fields(subject: models.Model | None) -> tuple[str, str, str]:
    if subject is None:
        return "", "", ""
    return subject._meta.label_lower, str(subject.pk), str(subject)[:300]


def audit_log(
    *,
    action: str,
    actor: Actor,
    subject: models.Model | None = None,
    data: dict | None = None,
) -> AuditEntry:
    """Append one entry to the hash chain, inside the caller's transaction.

    The database links and hashes the row and takes the chain lock until that transaction
    ends, so callers write audit entries last in their transactions.
    """
    sql, params = audit_insert_sql(action=action, actor=actor, subject=subject, data=data)
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING id", params)
        return AuditEntry(id=cursor.fetchone()[0])


AUDIT_COLUMNS = (
    "created_at, action, actor_type, actor_user_id, actor_employee_id, actor_label, "
    "subject_type, subject_id, subject_label, data, prev_hash, hash"
)


def audit_insert_sql(
    *,
    action: str,
    actor: Actor,
    subject: models.Model | None,
    data: dict | None,
    when: str = "",
    named: str = "",
) -> tuple[str, list | dict]:
    """An INSERT of one audit entry, to run alone or inside a larger statement.

    `when` is an optional SQL condition (for example "EXISTS (SELECT 1 FROM settle_task)") that
    decides, inside that statement, whether the entry is written. With `named`, placeholders
    are %(named_0)s... and the parameters a dict, for statements using named parameters.
    """
    data_json = _clean(action, data)
    subject_type, subject_id, subject_label = _subject_fields(subject)
    marks = [f"%({named}_{i})s" if named else "%s" for i in range(9)]
    sql = (
        f"INSERT INTO aiworkforce_auditentry ({AUDIT_COLUMNS}) "
        f"SELECT now(), {', '.join(marks[:8])}, {marks[8]}::jsonb, '', ''"
    )
    if when:
        sql += f" WHERE {when}"
    params = [
        action,
        actor.type,
        actor.user_id,
        actor.employee_id,
        actor.label[:200],
        subject_type,
        subject_id,
        subject_label,
        data_json,
    ]
    if named:
        return sql, {f"{named}_{i}": value for i, value in enumerate(params)}
    return sql, params


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


def audit_chain_breaks(*, batch_size: int = 5000) -> Iterator[ChainBreak | int]:
    """Walk the chain in order; yield a running count per batch and a ChainBreak per defect.

    The database recomputes each row's hash (the same function its trigger used), so a row
    changed by someone who disabled the append-only trigger no longer matches.
    """
    expected_prev = GENESIS_HASH
    checked = 0
    last_id = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT e.id, e.prev_hash, e.hash, e.hash = aiworkforce_audit_hash(e) "
                "FROM aiworkforce_auditentry e WHERE e.id > %s ORDER BY e.id LIMIT %s",
                [last_id, batch_size],
            )
            rows = cursor.fetchall()
        if not rows:
            return
        for entry_id, prev_hash, own_hash, content_ok in rows:
            if prev_hash != expected_prev:
                yield ChainBreak(entry_id, "its previous-hash does not match the entry before it")
            if not content_ok:
                yield ChainBreak(entry_id, "its content does not match its hash (altered)")
            expected_prev = own_hash
            last_id = entry_id
        checked += len(rows)
        yield checked
