"""Cutting a document's text into chunks: Markdown by headings, any text by size with overlap.

Cuts fall on paragraph and sentence boundaries where possible; each chunk after the first starts
with up to `overlap` characters of the one before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

HEADING_SEPARATOR = " \u203a "  # "Refunds > Eligibility" with a single angle quote


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
