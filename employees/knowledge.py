"""Knowledge documents: upload a text, Markdown or PDF file; a job reads it into memory chunks.

Upload checks the file at once (type by extension *and* content, size, encoding, a PDF's text
layer), so a bad file is refused with a message saying what to do, and nothing is stored. The
ingest job then chunks the text (Markdown by headings, every text by size with overlap on
paragraph and sentence boundaries), embeds the chunks batch by batch outside any transaction
(progress is `chunks_done` of `chunks_total`), and stores them not yet live. One final
transaction makes the new chunks live and deletes the older uploads of the same title, so recall
sees the old version or the new one, never half of either. A failure keeps the old version.

Document text is data. Chunks are always kind "document", their `details` hold only what the
ingester itself knows (document id, page, heading path); nothing in a file can make it a lesson,
grant a tool or change a policy.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath, PureWindowsPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from employees.embeddings import EmbeddingError, get_embedder
from employees.memory import MemoryConfigurationError, check_embedding_dimensions, expiry_for
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

CONTENT_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".pdf": "application/pdf",
}
# Chunks embedded (and stored, and counted in the progress bar) per step of the job.
EMBED_BATCH = 32
HEADING_SEPARATOR = " \u203a "  # "Refunds > Eligibility" with a single angle quote
# Advisory lock namespace ("know"): one ingest run per document at a time, across workers.
_LOCK_NAMESPACE = 0x6B6E6F77


class IngestError(Exception):
    """A document cannot be read; the message is shown to the person who uploaded it."""


# --- reading files ------------------------------------------------------------------------------


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{size} bytes"


def _clean_title(name: str) -> str:
    # Browsers send a bare name, but some clients send a path (C:\Users\...\file.md).
    name = PureWindowsPath(PurePosixPath(name or "").name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:200]


def _extension(title: str) -> str:
    return PurePosixPath(title.lower()).suffix


def decode_text(content: bytes, *, title: str) -> str:
    """UTF-8 text (a byte-order mark is dropped), with newlines normalised; else a clear error."""
    if b"\x00" in content[:8192]:
        raise IngestError(
            f"“{title}” looks like a binary file, not text. Upload plain text, Markdown or PDF."
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"“{title}” is not UTF-8 text (byte 0x{content[exc.start]:02x} at position "
            f"{exc.start} is not valid UTF-8). Save it as UTF-8 in your editor and upload it again."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _pdf_reader(content: bytes, *, title: str):
    from pypdf import PdfReader

    if not content.startswith(b"%PDF-"):
        raise IngestError(
            f"“{title}” is not a PDF (a PDF file starts with “%PDF-”). Check the file, or "
            "upload it with the extension that matches its content."
        )
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(
                f"“{title}” is password-protected. Remove the password and upload it again."
            )
        pages = len(reader.pages)  # parses the page tree: a broken file fails here
    except IngestError:
        raise
    except Exception as exc:  # pypdf raises many kinds of errors on broken files
        raise IngestError(
            f"“{title}” could not be read as a PDF ({exc.__class__.__name__}: {exc}). "
            "Re-export it from the program that made it and upload it again."
        ) from None
    if not pages:
        raise IngestError(f"“{title}” has no pages.")
    return reader


def _page_text(page) -> str:
    text = page.extract_text() or ""
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def pdf_pages(content: bytes, *, title: str) -> list[str]:
    """The text of each page (empty for a page without a text layer)."""
    reader = _pdf_reader(content, title=title)
    try:
        return [_page_text(page) for page in reader.pages]
    except Exception as exc:
        raise IngestError(
            f"Text could not be extracted from “{title}” ({exc.__class__.__name__}: {exc})."
        ) from None


def _no_text_layer(title: str) -> IngestError:
    return IngestError(
        f"“{title}” has no text layer: it looks like a scanned image. Run it through OCR "
        "(most scanners and PDF tools can) or upload the text itself."
    )


def _check_pdf_has_text(content: bytes, *, title: str) -> None:
    # Stops at the first page with text, so a long normal PDF is not read twice at upload.
    reader = _pdf_reader(content, title=title)
    try:
        for page in reader.pages:
            if _page_text(page).strip():
                return
    except Exception as exc:
        raise IngestError(
            f"Text could not be extracted from “{title}” ({exc.__class__.__name__}: {exc})."
        ) from None
    raise _no_text_layer(title)


# --- chunking -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    text: str  # what is stored and embedded: the heading path, a blank line, the body
    heading: str = ""  # the heading path, e.g. "Refunds" + HEADING_SEPARATOR + "Eligibility"
    page: int | None = None  # PDF page, from 1


# An ATX heading's marker and the rest of its line. The closing "#"s are removed by
# _heading_title, not by the pattern: a lazy title followed by optional trailing runs made a
# long run of spaces cost quadratic time (a 16 kB line took 2.6 s, 256 kB about ten minutes).
_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(.+)")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
# After a sentence's final mark (and a closing quote or bracket, which stays with it).
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"')\]])\s+")


def _heading_title(rest: str) -> str:
    """A heading's text without its closing sequence ("## Title ##" -> "Title"); linear."""
    text = rest.rstrip(" \t")
    unclosed = text.rstrip("#")
    # A closing run counts only after a space and after some text: "# ##" is titled "##".
    if len(unclosed) < len(text) and unclosed.endswith((" ", "\t")) and unclosed.strip(" \t"):
        text = unclosed
    return text.strip()


def markdown_sections(text: str) -> Iterator[tuple[str, str]]:
    """(heading path, body) for each part of a Markdown text, split at ATX headings (# .. ######);
    a '#' line inside a fenced code block is not a heading."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fence = None

    def flush():
        joined = "\n".join(body).strip()
        body.clear()
        return joined

    for line in text.split("\n"):
        marker = _FENCE.match(line)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
        heading = None if fence or marker else _HEADING.match(line)
        if heading:
            section = flush()
            if section:
                yield HEADING_SEPARATOR.join(title for _, title in path), section
            level = len(heading.group(1))
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, _heading_title(heading.group(2))))
        else:
            body.append(line)
    section = flush()
    if section:
        yield HEADING_SEPARATOR.join(title for _, title in path), section


def _hard_split(text: str, limit: int) -> Iterator[str]:
    """Words packed up to `limit`; a word longer than that is cut."""
    current = ""
    for word in text.split():
        while len(word) > limit:
            if current:
                yield current
                current = ""
            yield word[:limit]
            word = word[limit:]
        if current and len(current) + 1 + len(word) > limit:
            yield current
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        yield current


def _pieces(text: str, limit: int) -> Iterator[tuple[str, str]]:
    """(separator, piece): paragraphs, or sentences of a long paragraph, or words of a long
    sentence; every piece at most `limit` characters."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= limit:
            yield "\n\n", paragraph
            continue
        separator = "\n\n"
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = sentence.strip()
            if not sentence:
                continue
            for piece in [sentence] if len(sentence) <= limit else _hard_split(sentence, limit):
                yield separator, piece
                separator = " "


def _overlap_tail(text: str, overlap: int) -> str:
    """The end of a chunk to repeat at the start of the next: at most `overlap` characters,
    starting at a sentence (else a word) boundary."""
    if overlap <= 0 or not text:
        return ""
    tail = text[-overlap:]
    if len(text) > overlap:
        boundary = re.search(r"(?<=[.!?…])\s+|\n\s*\n", tail)
        if boundary and tail[boundary.end() :].strip():
            return tail[boundary.end() :].strip()
        space = tail.find(" ")
        tail = tail[space + 1 :] if space != -1 else tail
    return tail.strip()


def split_by_size(text: str, *, size: int, overlap: int) -> list[str]:
    """Pieces of at most `size` characters, cut between paragraphs or sentences where possible,
    each (after the first) starting with up to `overlap` characters of the one before."""
    overlap = max(0, min(overlap, size // 2))
    limit = max(size - overlap - 2, 1)
    chunks: list[str] = []
    current = ""
    for separator, piece in _pieces(text, limit):
        if current and len(current) + len(separator) + len(piece) > size:
            chunks.append(current)
            current = _overlap_tail(current, overlap)
            if current and len(current) + len(separator) + len(piece) > size:
                current = ""
        current = f"{current}{separator}{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _with_heading(heading: str, bodies: list[str], page: int | None = None) -> list[Chunk]:
    return [
        Chunk(text=f"{heading}\n\n{body}" if heading else body, heading=heading, page=page)
        for body in bodies
    ]


def _body_size(heading: str, size: int) -> int:
    # The heading prefix counts towards the chunk size; a body keeps at least half of it.
    return max(size - len(heading) - 2, size // 2) if heading else size


def chunk_markdown(text: str, *, size: int, overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for heading, body in markdown_sections(text):
        bodies = split_by_size(body, size=_body_size(heading, size), overlap=overlap)
        chunks.extend(_with_heading(heading, bodies))
    return chunks


def chunk_plain(text: str, *, size: int, overlap: int) -> list[Chunk]:
    return _with_heading("", split_by_size(text, size=size, overlap=overlap))


def chunk_pdf(pages: list[str], *, size: int, overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for number, text in enumerate(pages, start=1):
        chunks.extend(_with_heading("", split_by_size(text, size=size, overlap=overlap), number))
    return chunks


def document_chunks(document: KnowledgeDocument) -> list[Chunk]:
    """Extract the document's text and cut it into chunks (settings decide size and overlap)."""
    size, overlap = settings.MEMORY_CHUNK_CHARS, settings.MEMORY_CHUNK_OVERLAP
    content = bytes(document.content)
    if document.content_type == "application/pdf":
        pages = pdf_pages(content, title=document.title)
        if not any(page.strip() for page in pages):
            raise _no_text_layer(document.title)
        chunks = chunk_pdf(pages, size=size, overlap=overlap)
    elif document.content_type == "text/markdown":
        chunks = chunk_markdown(
            decode_text(content, title=document.title), size=size, overlap=overlap
        )
    else:
        chunks = chunk_plain(decode_text(content, title=document.title), size=size, overlap=overlap)
    if not chunks:
        raise IngestError(f"“{document.title}” contains no text to remember.")
    return chunks


# --- services -----------------------------------------------------------------------------------


def _owner_fields(owner: Employee | Team) -> dict:
    if isinstance(owner, Employee):
        return {"scope": MemoryScope.EMPLOYEE, "employee": owner}
    if isinstance(owner, Team):
        return {"scope": MemoryScope.TEAM, "team": owner}
    raise TypeError("A document belongs to an employee or a team.")


def _validate_upload(*, title: str, extension: str, content: bytes) -> None:
    if extension == ".pdf":
        _check_pdf_has_text(content, title=title)
        return
    if content.startswith(b"%PDF-"):
        raise IngestError(f"“{title}” is a PDF named like a text file: rename it to .pdf.")
    text = decode_text(content, title=title)
    if not text.strip():
        raise IngestError(f"“{title}” contains only blank space; there is nothing to remember.")


def document_upload(*, owner: Employee | Team, uploaded_file, user) -> KnowledgeDocument:
    """Check and store an uploaded file for an employee or a team; a job reads it afterwards.

    Raises ValidationError with a message a person can act on; nothing is stored then.
    """
    title = _clean_title(getattr(uploaded_file, "name", "") or "")
    if not title:
        raise ValidationError("Choose a file to upload.")
    extension = _extension(title)
    if extension not in CONTENT_TYPES:
        raise ValidationError(
            f"“{title}” cannot be read: upload plain text (.txt), Markdown (.md, .markdown) "
            "or PDF (.pdf). Export other formats (Word, HTML) to PDF or text first."
        )
    limit = settings.MEMORY_UPLOAD_MAX_BYTES
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise ValidationError(
            f"“{title}” is {_megabytes(uploaded_file.size)}; the largest file accepted is "
            f"{_megabytes(limit)}. Split it into smaller files (MEMORY_UPLOAD_MAX_BYTES sets "
            "the limit)."
        )
    content = uploaded_file.read(limit + 1)
    if len(content) > limit:
        raise ValidationError(
            f"“{title}” is larger than {_megabytes(limit)}, the largest file accepted."
        )
    if not content:
        raise ValidationError(f"“{title}” is empty; there is nothing to remember.")
    try:
        _validate_upload(title=title, extension=extension, content=content)
    except IngestError as exc:
        raise ValidationError(str(exc)) from None
    sha256 = hashlib.sha256(content).hexdigest()
    with transaction.atomic():
        document = KnowledgeDocument.objects.create(
            **_owner_fields(owner),
            title=title,
            content_type=CONTENT_TYPES[extension],
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
