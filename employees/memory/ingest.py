"""Knowledge documents: upload a text, Markdown or PDF file; a job reads it into memory chunks.

Upload checks the file at once (employees.memory.files) and stores it. The ingest job then
chunks the text (employees.memory.chunking), embeds the chunks batch by batch outside any
transaction (progress is `chunks_done` of `chunks_total`), and stores them not yet live. One
final transaction makes the new chunks live and deletes the older uploads of the same title, so
recall sees the old version or the new one, never half of either. A failure keeps the old version.

Document text is data. Chunks are always kind "document", their `details` hold only what the
ingester itself knows (document id, page, heading path); nothing in a file can make it a lesson,
grant a tool or change a policy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from employees.memory.chunking import HEADING_SEPARATOR, Chunk
from employees.memory.embeddings import EmbeddingError, get_embedder
from employees.memory.files import IngestError, checked_upload, document_chunks
from employees.memory.services import expiry_for
from employees.memory.vectors import MemoryConfigurationError, check_embedding_dimensions
from employees.models import (
    DocumentStatus,
    Employee,
    KnowledgeDocument,
    MemoryEntry,
    MemoryKind,
    MemoryScope,
    Team,
)
from tasks.step_redaction import steps_redact_memories

logger = logging.getLogger(__name__)

# Chunks embedded (and stored, and counted in the progress bar) per step of the job.
EMBED_BATCH = 32
# Advisory lock namespace ("know"): one ingest run per document at a time, across workers.
_LOCK_NAMESPACE = 0x6B6E6F77


def _owner_fields(owner: Employee | Team) -> dict:
    if isinstance(owner, Employee):
        return {"scope": MemoryScope.EMPLOYEE, "employee": owner}
    if isinstance(owner, Team):
        return {"scope": MemoryScope.TEAM, "team": owner}
    raise TypeError("A document belongs to an employee or a team.")


def document_upload(*, owner: Employee | Team, uploaded_file, user) -> KnowledgeDocument:
    """Check and store an uploaded file for an employee or a team; a job reads it afterwards.

    Raises ValidationError with a message a person can act on; nothing is stored then.
    """
    title, content_type, content = checked_upload(uploaded_file)
    sha256 = hashlib.sha256(content).hexdigest()
    with transaction.atomic():
        document = KnowledgeDocument.objects.create(
            **_owner_fields(owner),
            title=title,
            content_type=content_type,
            content=content,
            size_bytes=len(content),
            sha256=sha256,
            uploaded_by=user if getattr(user, "pk", None) else None,
        )
        audit_log(
            action="knowledge.uploaded",
            actor=Actor.for_user(user),
            subject=document,
            data={
                "document": document.pk,
                "title": title,
                "bytes": len(content),
                "sha256": sha256,
                "scope": document.scope,
                "owner": owner.pk,
            },
        )
        transaction.on_commit(lambda: enqueue_ingest(document.pk))
    return document


def enqueue_ingest(document_id: int) -> None:
    from django_q.tasks import async_task

    async_task(
        "employees.jobs.ingest_document",
        document_id,
        task_name=f"ingest document {document_id}",
        group="memory",
    )


def documents_resume_stalled(*, quiet_for: timedelta, limit: int = 100) -> int:
    """Ask again for documents nobody has read for `quiet_for` (their job was lost: a purged
    queue, a replaced broker). A reading run moves `updated_at` with every batch, and a second
    job finds the first one's lock and leaves; the claim below keeps each sweep from asking
    twice within `quiet_for`."""
    cutoff = timezone.now() - quiet_for
    stalled = KnowledgeDocument.objects.filter(
        status__in=(DocumentStatus.PENDING, DocumentStatus.PROCESSING), updated_at__lt=cutoff
    )
    asked = 0
    for pk in stalled.values_list("pk", flat=True)[:limit]:
        if stalled.filter(pk=pk).update(updated_at=timezone.now()):
            enqueue_ingest(pk)
            asked += 1
    return asked


@transaction.atomic
def document_delete(*, document: KnowledgeDocument, user, reason: str = "") -> int:
    """Forget a document: its file and every chunk of it leave recall the moment this commits,
    and the chunks' text leaves the recorded steps of the tasks that recalled them."""
    locked = KnowledgeDocument.objects.select_for_update().filter(pk=document.pk).first()
    if locked is None:
        return 0
    chunk_ids = list(locked.chunks.values_list("pk", flat=True))
    chunks = len(chunk_ids)
    data = {
        "document": locked.pk,
        "title": locked.title,
        "sha256": locked.sha256,
        "scope": locked.scope,
        "owner": locked.employee_id or locked.team_id,
        "chunks": chunks,
        "reason": reason[:200],
    }
    locked.delete()
    steps_redact_memories(
        memory_ids=chunk_ids,
        employee_ids=[locked.employee_id] if locked.employee_id else [],
        team_ids=[locked.team_id] if locked.team_id and not locked.employee_id else [],
    )
    audit_log(action="knowledge.deleted", actor=Actor.for_user(user), subject=None, data=data)
    return chunks


# --- the ingest job -----------------------------------------------------------------------------


@contextmanager
def _run_lock(document_id: int) -> Iterator[bool]:
    """A session advisory lock: held while a run is alive, released if its worker dies."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, document_id])
        got = cursor.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, document_id]
                    )
            except Exception:  # the connection is gone, and the lock with it
                logger.warning("could not release the ingest lock of document %s", document_id)


def document_ingest(document_id: int) -> str:
    """Read a document into memory chunks; safe to run twice, and after a crashed run."""
    with _run_lock(document_id) as got:
        if not got:
            return "another run is reading this document"
        document = KnowledgeDocument.objects.filter(pk=document_id).first()
        if document is None:
            return "document deleted"
        if document.status in (DocumentStatus.READY, DocumentStatus.FAILED):
            return f"already {document.status}"
        if document.status == DocumentStatus.PENDING:
            claimed = KnowledgeDocument.objects.filter(
                pk=document_id, status=DocumentStatus.PENDING
            ).update(status=DocumentStatus.PROCESSING, updated_at=timezone.now())
            if claimed != 1:
                return "taken by another run"
        # Status is PROCESSING and we hold the lock: either we just claimed it, or the run that
        # claimed it died. Either way start from scratch.
        MemoryEntry.objects.filter(document_id=document_id, live=False).delete()
        KnowledgeDocument.objects.filter(pk=document_id).update(
            chunks_total=0, chunks_done=0, error="", updated_at=timezone.now()
        )
        try:
            return _ingest(document)
        except _DocumentGone:
            return "document deleted while reading"
        except IngestError as exc:
            _fail(document, str(exc))
            return "failed"
        except (EmbeddingError, MemoryConfigurationError) as exc:
            _fail(
                document,
                f"{exc} Upload the file again to retry; the previous version stays in use.",
            )
            return "failed"
        except Exception as exc:
            logger.exception("reading document %s failed", document_id)
            _fail(
                document,
                f"Reading stopped with an unexpected error ({exc.__class__.__name__}: {exc}). "
                "Upload the file again to retry; the previous version stays in use meanwhile.",
            )
            return "failed"


class _DocumentGone(Exception):
    pass


def _lock_processing(document_id: int) -> KnowledgeDocument:
    document = (
        KnowledgeDocument.objects.select_for_update()
        .filter(pk=document_id, status=DocumentStatus.PROCESSING)
        .defer("content")
        .first()
    )
    if document is None:
        raise _DocumentGone
    return document


def _ingest(document: KnowledgeDocument) -> str:
    chunks = document_chunks(document)
    KnowledgeDocument.objects.filter(pk=document.pk).update(
        chunks_total=len(chunks), updated_at=timezone.now()
    )
    check_embedding_dimensions()
    embedder = get_embedder()
    employee = document.employee if document.scope == MemoryScope.EMPLOYEE else None
    expires_at = expiry_for(kind=MemoryKind.DOCUMENT, employee=employee)
    owner = _owner_fields(document.owner)
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start : start + EMBED_BATCH]
        # The embedding endpoint is called outside any transaction: no locks held while waiting.
        vectors = embedder.embed([chunk.text for chunk in batch])
        with transaction.atomic():
            _lock_processing(document.pk)
            MemoryEntry.objects.bulk_create(
                MemoryEntry(
                    **owner,
                    kind=MemoryKind.DOCUMENT,
                    text=chunk.text,
                    embedding=vector,
                    embedder=embedder.name,
                    source=_source(document.title, chunk)[:300],
                    details=_details(document, chunk),
                    document=document,
                    chunk_index=start + offset,
                    live=False,
                    created_by=document.uploaded_by,
                    expires_at=expires_at,
                )
                for offset, (chunk, vector) in enumerate(zip(batch, vectors, strict=True))
            )
            KnowledgeDocument.objects.filter(pk=document.pk).update(
                chunks_done=F("chunks_done") + len(batch), updated_at=timezone.now()
            )
    return _finish(document.pk, chunks=len(chunks), embedder=embedder.name)


def _source(title: str, chunk: Chunk) -> str:
    if chunk.page is not None:
        return f"{title}, p. {chunk.page}"
    return f"{title}{HEADING_SEPARATOR}{chunk.heading}" if chunk.heading else title


def _details(document: KnowledgeDocument, chunk: Chunk) -> dict:
    # Only what the ingester knows; never anything parsed out of the file as instructions.
    details: dict = {"document": document.pk}
    if chunk.heading:
        details["heading"] = chunk.heading
    if chunk.page is not None:
        details["page"] = chunk.page
    return details


def _finish(document_id: int, *, chunks: int, embedder: str) -> str:
    with transaction.atomic():
        document = _lock_processing(document_id)
        # Older uploads of this title go, even one still being read (its job then stops). A
        # newer upload is never older than this one, so it is left alone.
        same_title = list(
            KnowledgeDocument.objects.select_for_update()
            .filter(
                scope=document.scope,
                employee_id=document.employee_id,
                team_id=document.team_id,
                title=document.title,
            )
            .exclude(pk=document.pk)
            .defer("content")
            .order_by("pk")
        )
        older = [d.pk for d in same_title if d.pk < document.pk]
        replaced_chunks = MemoryEntry.objects.filter(document_id__in=older).count()
        KnowledgeDocument.objects.filter(pk__in=older).delete()
        MemoryEntry.objects.filter(document_id=document.pk).update(live=True)
        KnowledgeDocument.objects.filter(pk=document.pk).update(
            status=DocumentStatus.READY, chunks_done=chunks, error="", updated_at=timezone.now()
        )
        audit_log(
            action="knowledge.ingested",
            actor=Actor.system("knowledge"),
            subject=document,
            data={
                "document": document.pk,
                "title": document.title,
                "chunks": chunks,
                "embedder": embedder,
                "replaced_documents": older,
                "replaced_chunks": replaced_chunks,
            },
        )
    return "ready"


def _fail(document: KnowledgeDocument, message: str) -> None:
    with transaction.atomic():
        MemoryEntry.objects.filter(document_id=document.pk, live=False).delete()
        failed = KnowledgeDocument.objects.filter(
            pk=document.pk, status=DocumentStatus.PROCESSING
        ).update(status=DocumentStatus.FAILED, error=message[:500], updated_at=timezone.now())
        if failed:
            audit_log(
                action="knowledge.failed",
                actor=Actor.system("knowledge"),
                subject=document,
                data={"document": document.pk, "title": document.title, "error": message[:500]},
            )
