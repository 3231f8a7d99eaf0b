"""Changes to memories: remember, correct, pin, forget, expire and embed; every change audited.

Memories belong to one employee (private) or to a team (shared with every employee of the team).
Forgetting is real: deleting a memory removes its row (and so its text and vector). The audit
entry keeps who forgot what kind of memory, from where and when, and a hash of the text, never
the text itself.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from employees.memory.embeddings import get_embedder
from employees.memory.partitions import EMPLOYEE_PARTITION_SQL, TEAM_PARTITION_SQL
from employees.memory.vectors import check_embedding_dimensions, vector_literal
from employees.models import Employee, MemoryEntry, MemoryKind, MemoryScope, Team
from tasks.step_redaction import steps_redact_memories

logger = logging.getLogger(__name__)

MEMORY_TEXT_MAX = 4000


# --- retention ----------------------------------------------------------------------------------


def retention_days(*, kind: str, employee: Employee | None = None) -> int | None:
    """How many days a memory of this kind is kept (None: until someone deletes it)."""
    if employee is not None and kind in (employee.memory_retention_days or {}):
        return employee.memory_retention_days[kind]
    return settings.MEMORY_RETENTION_DAYS.get(kind)


def expiry_for(*, kind: str, employee: Employee | None, now: datetime | None = None):
    days = retention_days(kind=kind, employee=employee)
    return (now or timezone.now()) + timedelta(days=days) if days else None


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError("A memory needs some text.")
    if len(text) > MEMORY_TEXT_MAX:
        raise ValidationError(
            f"A memory holds at most {MEMORY_TEXT_MAX} characters (this one has {len(text)}); "
            "split it, or upload it as a document."
        )
    return text


def _owner_fields(employee: Employee | None, team: Team | None) -> dict:
    if (employee is None) == (team is None):
        raise ValueError("A memory belongs to exactly one employee or one team.")
    if employee is not None:
        return {"scope": MemoryScope.EMPLOYEE, "employee": employee}
    return {"scope": MemoryScope.TEAM, "team": team}


def _embed(texts: list[str]) -> tuple[list[list[float]] | None, str]:
    """Vectors now when the embedder is local; None when a job must fetch them later."""
    check_embedding_dimensions()
    embedder = get_embedder()
    if not embedder.local:
        return None, ""
    return embedder.embed(texts), embedder.name


def _audit_data(memory: MemoryEntry, **extra) -> dict:
    return {
        "memory": memory.pk,
        "kind": memory.kind,
        "scope": memory.scope,
        "owner": memory.employee_id or memory.team_id,
        "source": memory.source,
        **extra,
    }


def _text_fingerprint(text: str) -> dict:
    return {"chars": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


def memory_remember(
    *,
    kind: str,
    text: str,
    actor: Actor,
    employee: Employee | None = None,
    team: Team | None = None,
    source: str = "",
    details: dict | None = None,
    source_task=None,
    user=None,
    pinned: bool = False,
) -> MemoryEntry:
    """Store one memory, embedded now (offline embedder) or by a job (embedding endpoint)."""
    if kind not in MemoryKind.values:
        raise ValidationError(f"'{kind}' is not a memory kind; use {', '.join(MemoryKind.values)}.")
    text = _clean_text(text)
    vectors, embedder = _embed([text])
    memory = MemoryEntry.objects.create(
        **_owner_fields(employee, team),
        kind=kind,
        text=text,
        embedding=vectors[0] if vectors else None,
        embedder=embedder,
        source=source[:300],
        details=details or {},
        source_task=source_task,
        created_by=user if getattr(user, "pk", None) else None,
        pinned=pinned,
        expires_at=None if pinned else expiry_for(kind=kind, employee=employee),
    )
    audit_log(
        action="memory.remembered",
        actor=actor,
        subject=memory,
        data=_audit_data(memory, **_text_fingerprint(text)),
    )
    if vectors is None:
        transaction.on_commit(enqueue_embedding)
    return memory


def enqueue_embedding() -> None:
    from django_q.tasks import async_task

    async_task("employees.jobs.embed_pending_memories", task_name="embed memories", group="memory")


# A worker finishing many tasks a second asks for one embedding job per interval, not one per
# episode: the job embeds everything pending, and run_due (every minute) catches what was
# written after a job's last look.
EMBEDDING_REQUEST_INTERVAL = 2.0
_last_embedding_request = -EMBEDDING_REQUEST_INTERVAL


def request_embedding() -> None:
    """Have pending memories embedded soon (at most one job per interval from this process)."""
    global _last_embedding_request
    now = time.monotonic()
    if now - _last_embedding_request < EMBEDDING_REQUEST_INTERVAL:
        return
    _last_embedding_request = now
    try:
        enqueue_embedding()
    except Exception:  # the broker is down: the memories wait for run_due, the work goes on
        logger.warning("could not ask for an embedding job; run_due will embed", exc_info=True)


def partition_of(memory: MemoryEntry) -> dict:
    """Filter arguments naming one memory and its owner: PostgreSQL then reads that owner's
    partition only (a lookup by id alone plans every partition: ~15 ms at 200 employees)."""
    return {"pk": memory.pk, "employee_id": memory.employee_id, "team_id": memory.team_id}


def memory_update(
    *, memory: MemoryEntry, user, text: str | None = None, pinned: bool | None = None
):
    """Correct a memory's text (re-embedded at once) or pin/unpin it (pinned never expires)."""
    changes: dict = {}
    fields = ["updated_at"]
    if text is not None and text.strip() != memory.text:
        new_text = _clean_text(text)
        vectors, embedder = _embed([new_text])
        changes["text"] = {"before": _text_fingerprint(memory.text), **_text_fingerprint(new_text)}
        memory.text, memory.embedding, memory.embedder = (
            new_text,
            vectors[0] if vectors else None,
            embedder,
        )
        fields += ["text", "embedding", "embedder"]
    if pinned is not None and pinned != memory.pinned:
        changes["pinned"] = pinned
        memory.pinned = pinned
        employee = memory.employee if memory.scope == MemoryScope.EMPLOYEE else None
        memory.expires_at = (
            None
            if pinned
            else expiry_for(kind=memory.kind, employee=employee, now=memory.created_at)
        )
        fields += ["pinned", "expires_at"]
    if not changes:
        return memory
    memory.updated_at = timezone.now()
    with transaction.atomic():
        # By id and owner: a save() by id alone would plan every partition of the table.
        MemoryEntry.objects.filter(**partition_of(memory)).update(
            **{field: getattr(memory, field) for field in fields}
        )
        audit_log(
            action="memory.edited",
            actor=Actor.for_user(user),
            subject=memory,
            data=_audit_data(memory, changes=changes),
        )
        if "embedding" in fields and memory.embedding is None:
            transaction.on_commit(enqueue_embedding)
    return memory


@transaction.atomic
def memories_delete(*, memories, user, reason: str = "") -> int:
    """Forget these memories for good: they leave recall the moment this commits, and their
    text leaves the recorded steps of the tasks that recalled them."""
    rows = list(memories.select_for_update().order_by("pk"))
    if not rows:
        return 0
    memories.filter(pk__in=[m.pk for m in rows]).delete()  # the owner's filter prunes
    steps_redact_memories(
        memory_ids=[m.pk for m in rows],
        employee_ids={m.employee_id for m in rows if m.employee_id is not None},
        team_ids={m.team_id for m in rows if m.employee_id is None},
    )
    for memory in rows:
        audit_log(
            action="memory.deleted",
            actor=Actor.for_user(user),
            subject=None,
            data=_audit_data(memory, reason=reason[:200], **_text_fingerprint(memory.text)),
        )
    return len(rows)


def memories_expire(*, now: datetime | None = None, batch: int = 5000) -> int:
    """Delete memories past their expiry (recall already ignores them); one audit entry per run."""
    now = now or timezone.now()
    total = 0
    while True:
        ids = list(
            MemoryEntry.objects.filter(expires_at__lte=now, pinned=False).values_list(
                "pk", flat=True
            )[:batch]
        )
        if not ids:
            break
        with transaction.atomic():
            deleted, _ = MemoryEntry.objects.filter(pk__in=ids, pinned=False).delete()
        total += deleted
    if total:
        audit_log(
            action="memory.expired",
            actor=Actor.system("retention"),
            subject=None,
            data={"deleted": total, "before": now.isoformat()},
        )
    return total


def memories_embed_pending(*, batch: int = 256, max_batches: int | None = None) -> int:
    """Embed memories stored without a vector (the embedding endpoint is called outside locks)."""
    check_embedding_dimensions()
    embedder = get_embedder()
    done = 0
    for _ in itertools.count() if max_batches is None else range(max_batches):
        pending = list(
            MemoryEntry.objects.filter(embedding__isnull=True).values_list(*STORE_FIELDS)[:batch]
        )
        if not pending:
            return done
        memories_store_vectors(
            rows=pending, vectors=embedder.embed([row[1] for row in pending]), embedder=embedder
        )
        done += len(pending)
    return done


# What memories_store_vectors needs of each row: its id and text, and its owner's columns.
STORE_FIELDS = ("pk", "text", "employee_id", "team_id")

# One statement per owner: with the owner's columns as constants it reads one partition (by
# id alone it would plan and probe every partition of the table).
_STORE_VECTORS_SQL = """
UPDATE employees_memoryentry m SET embedding = v.embedding::vector, embedder = %(embedder)s
FROM (SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(vectors)s::text[]) AS embedding,
             unnest(%(texts)s::text[]) AS text) v
WHERE m.id = v.id AND m.text = v.text  -- a memory edited meanwhile was embedded by its edit
  AND {owner}
"""


def memories_store_vectors(*, rows: list[tuple], vectors, embedder) -> None:
    """Store the vectors computed for rows of STORE_FIELDS, one statement per owner."""
    by_owner: dict[tuple, list] = {}
    for row, vector in zip(rows, vectors, strict=True):
        by_owner.setdefault((row[2], row[3]), []).append((row, vector))
    with connection.cursor() as cursor:
        for (employee_id, team_id), items in by_owner.items():
            owner = EMPLOYEE_PARTITION_SQL if employee_id is not None else TEAM_PARTITION_SQL
            cursor.execute(
                _STORE_VECTORS_SQL.format(owner=owner),
                {
                    "embedder": embedder.name,
                    "ids": [row[0] for row, _ in items],
                    "vectors": [vector_literal(vector) for _, vector in items],
                    "texts": [row[1] for row, _ in items],
                    "employee": employee_id,
                    "team": team_id,
                },
            )
