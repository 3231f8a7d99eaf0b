"""The audit trail is append-only in the database and its hash chain exposes tampering."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from aiworkforce.audit import GENESIS_HASH, Actor, audit_log
from aiworkforce.models import AuditEntry
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


def _three_entries():
    employee = EmployeeFactory()
    actor = Actor.system("tests")
    entries = [
        audit_log(action="employee.created", actor=actor, subject=employee, data={"n": n})
        for n in range(3)
    ]
    return [AuditEntry.objects.get(pk=entry.pk) for entry in entries]


def test_entries_form_a_chain_from_genesis():
    first, second, third = _three_entries()
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3 and len(first.hash) == 64


def test_the_database_sets_the_hash_whatever_the_writer_sends():
    from django.utils import timezone

    forged = AuditEntry.objects.create(
        created_at=timezone.now() - timezone.timedelta(days=30),
        action="employee.created",
        actor_type="system",
        actor_label="forger",
        prev_hash="f" * 64,
        hash="e" * 64,
    )
    forged.refresh_from_db()
    assert forged.prev_hash == GENESIS_HASH and forged.hash != "e" * 64
    assert (timezone.now() - forged.created_at).total_seconds() < 60


def test_raw_sql_update_of_an_audit_row_is_refused():
    entry = _three_entries()[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE aiworkforce_auditentry SET action = 'x.y' WHERE id = %s", [entry.id]
            )
    entry.refresh_from_db()
    assert entry.action == "employee.created"


def test_raw_sql_delete_of_an_audit_row_is_refused():
    entry = _three_entries()[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM aiworkforce_auditentry WHERE id = %s", [entry.id])
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_orm_update_and_delete_are_refused_too():
    entry = _three_entries()[0]
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(actor_label="someone else")
    with pytest.raises(DatabaseError), transaction.atomic():
        entry.delete()


def _tamper(sql: str, params: list) -> None:
    """Alter the table the way an attacker with owner rights would: trigger off, change, trigger on."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE aiworkforce_auditentry DISABLE TRIGGER aiworkforce_audit_append_only"
        )
        cursor.execute(sql, params)
        cursor.execute(
            "ALTER TABLE aiworkforce_auditentry ENABLE TRIGGER aiworkforce_audit_append_only"
        )


def test_verify_audit_passes_on_an_intact_chain(capsys):
    _three_entries()
    call_command("verify_audit")
    assert "Audit chain intact: 3 entries verified." in capsys.readouterr().out


def test_verify_audit_names_an_altered_row():
    _, second, _ = _three_entries()
    _tamper("UPDATE aiworkforce_auditentry SET data = '{\"n\": 99}' WHERE id = %s", [second.id])
    with pytest.raises(CommandError) as exc:
        call_command("verify_audit")
    assert f"Audit chain broken at entry #{second.id} (employee.created" in str(exc.value)
    assert "altered" in str(exc.value)
    assert exc.value.returncode == 1


def test_verify_audit_names_the_row_after_a_deleted_one():
    _, second, third = _three_entries()
    _tamper("DELETE FROM aiworkforce_auditentry WHERE id = %s", [second.id])
    with pytest.raises(CommandError) as exc:
        call_command("verify_audit")
    assert f"entry #{third.id}" in str(exc.value)
    assert "previous-hash does not match" in str(exc.value)


def test_secrets_are_redacted_before_they_reach_the_trail():
    entry = audit_log(
        action="tool_grant.created",
        actor=Actor.system(),
        data={"scope": {"api_key": "sk-live-123", "hosts": ["a.example"]}, "password": "hunter2"},
    )
    entry.refresh_from_db()
    assert entry.data == {
        "scope": {"api_key": "[redacted]", "hosts": ["a.example"]},
        "password": "[redacted]",
    }
    assert "sk-live-123" not in str(AuditEntry.objects.values_list("data", flat=True))


def test_action_names_must_be_namespaced():
    with pytest.raises(ValueError, match="namespaced"):
        audit_log(action="created", actor=Actor.system())


def test_redaction_matches_secret_words_not_lookalikes():
    from aiworkforce.audit import redact

    data = {
        "access_token": "t",
        "API-Key": "k",
        "tokens_in": 5,
        "max_tokens_per_turn": 9,
        "signature": "s",
    }
    assert redact(data) == {
        "access_token": "[redacted]",
        "API-Key": "[redacted]",
        "tokens_in": 5,
        "max_tokens_per_turn": 9,
        "signature": "[redacted]",
    }
