"""Long-term memory: remember, recall, correct and forget; every change audited.

Memories belong to one employee (private) or to a team (shared with every employee of the team).
Recall ranks by cosine distance on the HNSW index, filtered by scope, liveness and expiry, with
pgvector's iterative index scans so a selective filter still returns k results.

Forgetting is real: deleting a memory removes its row (and so its text and vector). The audit
entry keeps who forgot what kind of memory, from where and when, and a hash of the text, never
the text itself.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from pgvector import Vector

from aiworkforce.audit import Actor, audit_log
from employees.embeddings import get_embedder
from employees.models import Employee, MemoryEntry, MemoryKind, MemoryScope, Team
from tasks.step_redaction import steps_redact_memories

logger = logging.getLogger(__name__)

MEMORY_TEXT_MAX = 4000


class MemoryConfigurationError(RuntimeError):
    """The deployment's embedding settings do not match the database."""


# --- dimensions ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _column_dimensions() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = 'employees_memoryentry'::regclass AND attname = 'embedding'"
        )
        row = cursor.fetchone()
    return row[0] if row and row[0] > 0 else None


def check_embedding_dimensions() -> None:
    """Stop with a clear message when the column was built for another vector size."""
    column = _column_dimensions()
    wanted = settings.MEMORY_EMBEDDING_DIMENSIONS
    if column is not None and column != wanted:
        raise MemoryConfigurationError(
            f"MEMORY_EMBEDDING_DIMENSIONS is {wanted} but the memory table stores vectors of "
            f"{column} dimensions. Set it back to {column}, or run "
            "`./workforce manage reembed_memory --resize` to rebuild the column and index "
            f"for {wanted} and re-embed every memory."
        )


def forget_cached_dimensions() -> None:
    _column_dimensions.cache_clear()


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form, for raw SQL (`%s::vector`)."""
    return Vector(vector).to_text()


# --- retention ----------------------------------------------------------------------------------


def retention_days(*, kind: str, employee: Employee | None = None) -> int | None:
    """How many days a memory of this kind is kept (None: until someone deletes it)."""
    if employee is not None and kind in (employee.memory_retention_days or {}):
        return employee.memory_retention_days[kind]
    return settings.MEMORY_RETENTION_DAYS.get(kind)


def expiry_for(*, kind: str, employee: Employee | None, now: datetime | None = None):
    days = retention_days(kind=kind, employee=employee)
    return (now or timezone.now()) + timedelta(days=days) if days else None


# --- writes -------------------------------------------------------------------------------------


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


def memories_still_visible(*, employee: Employee, ids) -> set[int]:
    """Which of `ids` the employee may still recall: not deleted, not expired, not of a team
    it has left. Each half reads one partition."""
    if not ids:
        return set()
    recallable = MemoryEntry.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()), live=True, pk__in=ids
    )
    own, team = (
        qs.order_by().values_list("pk", flat=True) for qs in _readable(employee, recallable)
    )
    return set(own.union(team, all=True).order_by())


def _readable(employee: Employee, memories=MemoryEntry.objects) -> tuple:
    """The employee's own memories and its team's, as two querysets: each reads one partition
    (one OR of both would read every team's partition)."""
    return (
        memories.filter(employee_id=employee.pk),
        memories.filter(employee__isnull=True, team_id=employee.team_id),
    )


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
            owner = _OWN if employee_id is not None else _TEAMS
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


# --- reads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recalled:
    id: int
    kind: str
    text: str
    source: str
    distance: float
    details: dict

    def as_payload(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "source": self.source,
            "distance": round(self.distance, 4),
            "details": self.details,
        }


# The inner query walks the HNSW index in distance order, filtering as it goes; with iterative
# scans it keeps walking until k rows pass the filter. "relaxed_order" may return them slightly
# out of order, so the outer query sorts the k rows again (pgvector's documented pattern).
# One branch per partition the employee may read (its own, its team's: see migration 0006);
# each walks that partition's HNSW graph for its k nearest, and the k nearest of both win.
# The `employee_id IS NULL` is what prunes the second branch to the team's partition.
_RECALL_BRANCH = """
    (SELECT m.id, m.kind, m.text, m.source, m.details,
            m.embedding <=> %(query)s::vector AS distance
     FROM employees_memoryentry m
     WHERE {owner} AND m.embedding IS NOT NULL AND m.live
       AND (m.expires_at IS NULL OR m.expires_at > now()) {kinds}
     ORDER BY m.embedding <=> %(query)s::vector
     LIMIT %(k)s)"""
_OWN = "m.employee_id = %(employee)s"
_TEAMS = "m.employee_id IS NULL AND m.team_id = %(team)s"


def recall_sql(*, kinds: list[str] | None = None) -> str:
    kinds_filter = "AND m.kind = ANY(%(kinds)s)" if kinds else ""
    own, teams = (_RECALL_BRANCH.format(owner=o, kinds=kinds_filter) for o in (_OWN, _TEAMS))
    # Only constant fragments are put together; every value is a parameter.
    return f"""WITH nearest AS MATERIALIZED ({own}
    UNION ALL{teams}
)
SELECT id, kind, text, source, details, distance FROM nearest
ORDER BY distance, id LIMIT %(k)s"""  # noqa: S608


def set_search_options(cursor, *, ef_search: int | None = None) -> None:
    """Other hnsw.ef_search for the current transaction (connections default to the setting)."""
    cursor.execute(
        "SELECT set_config('hnsw.ef_search', %s, true), "
        "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
        [str(ef_search or settings.MEMORY_EF_SEARCH)],
    )


def memory_recall(
    *, employee: Employee, query: str, k: int, kinds: list[str] | None = None
) -> list[Recalled]:
    """The k memories nearest to `query` that this employee may see: its own and its team's."""
    if k <= 0 or not query.strip():
        return []
    check_embedding_dimensions()
    embedder = get_embedder()
    if not embedder.local and not _has_memories(employee):
        return []  # no call to the embedding endpoint for nothing
    vector = embedder.embed([query[:8000]])[0]
    params = {
        "query": vector_literal(vector),
        "employee": employee.pk,
        "team": employee.team_id,
        "k": k,
        "kinds": kinds,
    }
    # hnsw.ef_search and iterative scans are set on every connection (settings.DATABASES).
    with connection.cursor() as cursor:
        cursor.execute(recall_sql(kinds=kinds), params)
        rows = cursor.fetchall()
    return [
        Recalled(id=r[0], kind=r[1], text=r[2], source=r[3], details=_json(r[4]), distance=r[5])
        for r in rows
    ]


def _has_memories(employee: Employee) -> bool:
    own, team = _readable(employee)
    return own.exists() or team.exists()


def _json(value) -> dict:
    # Django's psycopg setup hands jsonb to Python as text (JSONField decodes it itself).
    return json.loads(value) if isinstance(value, str) else (value or {})
