"""Reading uploaded files: the checks an upload must pass, and a stored document's chunks.

An upload is checked at once (type by extension *and* content, size, encoding, a PDF's text
layer), so a bad file is refused with a message saying what to do, and nothing is stored.
"""

from __future__ import annotations

import io
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from django.conf import settings
from django.core.exceptions import ValidationError

from employees.memory.chunking import Chunk, chunk_markdown, chunk_pdf, chunk_plain
from employees.models import KnowledgeDocument

CONTENT_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".pdf": "application/pdf",
}


class IngestError(Exception):
    """A document cannot be read; the message is shown to the person who uploaded it."""


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


def _validate_upload(*, title: str, extension: str, content: bytes) -> None:
    if extension == ".pdf":
        _check_pdf_has_text(content, title=title)
        return
    if content.startswith(b"%PDF-"):
        raise IngestError(f"“{title}” is a PDF named like a text file: rename it to .pdf.")
    text = decode_text(content, title=title)
    if not text.strip():
        raise IngestError(f"“{title}” contains only blank space; there is nothing to remember.")


def checked_upload(uploaded_file) -> tuple[str, str, bytes]:
    """The title, content type and content of an uploaded file that passes every check.

    Raises ValidationError with a message a person can act on.
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
    return title, CONTENT_TYPES[extension], content


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
