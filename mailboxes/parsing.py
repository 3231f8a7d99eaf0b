"""From a parsed message (anymail's AnymailInboundMessage, from any ESP or IMAP) to the plain,
storable fields of one inbound mail.

Mail is untrusted and often malformed: a header that cannot be parsed is taken as absent, bytes
that are not valid in their charset arrive as U+FFFD or as lone surrogates, and a NUL may sit
anywhere. Each text is passed through `storable_copy` (NUL and lone surrogates become U+FFFD):
the mail is kept, never refused for its bytes, and never a 500.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.policy import default as default_policy
from pathlib import PurePosixPath, PureWindowsPath

from django.conf import settings

from aiworkforce.storable import storable_copy
from employees.memory.files import IngestError, pdf_pages

# A msg-id as RFC 5322 writes it: <left@right>, no spaces or angle brackets inside.
MESSAGE_ID_RE = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
MAX_REFERENCES = 20  # a long thread's References keeps its first and its latest ids
MAX_MESSAGE_ID = 250  # longer ids are ignored: they would not fit the 500-character columns
MAX_KEY = 200
MAX_ADDRESS, MAX_LOCAL_PART = 254, 64  # RFC 5321 4.5.3.1
TEXT_TYPES = ("text/plain", "text/markdown", "text/csv")


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int
    content: bytes
    text: str = ""
    note: str = ""


@dataclass
class ParsedMail:
    message_id: str
    sender: str
    sender_name: str
    recipients: list[str]
    subject: str
    sent_at: datetime | None
    text: str
    in_reply_to: str
    references: list[str]
    auto_submitted: bool
    spam: bool
    attachments: list[Attachment] = field(default_factory=list)
    message: object = None  # the parsed message: hashed only when it has no usable id
    # Why the From cannot be trusted (ambiguous, several, too long); "" when it can.
    sender_problem: str = ""
    precedence: str = ""  # the Precedence header, lower case (bulk, junk, list)
    list_id: str = ""  # the List-Id header: mail from a mailing list

    def key(self, provider: str, event_id: str | None) -> str:
        """What makes a second delivery of this message the same one."""
        if self.message_id and len(self.message_id) <= MAX_KEY:
            return self.message_id
        if event_id:
            key = f"{provider}:{event_id}"
            if len(key) <= MAX_KEY:
                return key
            # Never cut: two long event ids with one prefix would be one message.
            return f"{provider[:40]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
        return f"sha256:{_digest(self.message)}"


def _clean(value: object, limit: int | None = None) -> str:
    text = storable_copy(str(value or "")).strip()
    return text[:limit] if limit else text


def _header(message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a header the email package cannot parse at all is taken as absent
        return ""
    # Folded header lines (and a CR or LF smuggled into one) never reach a stored header.
    return re.sub(r"[\r\n\t]+", " ", _clean(value))


def message_ids(value: str) -> list[str]:
    """The well-formed msg-ids (of at most MAX_MESSAGE_ID characters) in a Message-ID,
    In-Reply-To or References header, in order."""
    return [i for i in MESSAGE_ID_RE.findall(value or "") if len(i) <= MAX_MESSAGE_ID]


def _thread_chain(ids: list[str]) -> list[str]:
    """A References list kept to its first and latest MAX_REFERENCES ids."""
    ids = list(dict.fromkeys(ids))
    return ids if len(ids) <= MAX_REFERENCES else ids[:1] + ids[-(MAX_REFERENCES - 1) :]


def usable_address(value: object) -> str:
    """The addr-spec in lower case, or "" when it is no usable address: never shortened (a cut
    address is another address), so one over 254 characters, or a local part over 64, is none."""
    addr = _clean(value).lower()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or len(addr) > MAX_ADDRESS:
        return ""
    if len(local) > MAX_LOCAL_PART or any(ch.isspace() or ch in "<>," for ch in addr):
        return ""
    return addr


def _addresses(message, names: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for name in names:
        try:
            addresses = message.get_address_header(name)
        except Exception:  # noqa: S112 - an unparsable address header is taken as absent
            continue
        for address in addresses:
            addr = usable_address(getattr(address, "addr_spec", ""))
            if addr and addr not in found:  # an unusable one is dropped, never cut
                found.append(addr)
    return found


def _strict_from(message) -> tuple[list[str], str]:
    """The From addresses as the email package's strict parser (headerregistry) reads the raw
    headers, and a problem it found ("" for none)."""
    try:
        values = [value for name, value in message.raw_items() if name.lower() == "from"]
    except Exception:
        return [], "its From header cannot be read"
    if len(values) > 1:
        return [], f"it has {len(values)} From headers"
    if not values:
        return [], ""
    try:
        header = values[0]
        if not hasattr(header, "defects"):  # a raw string (parsed from MIME): parse it
            header = default_policy.header_fetch_parse("From", str(header))
        addresses = [str(address.addr_spec) for address in header.addresses]
    except Exception:
        return [], "its From header cannot be parsed"
    if header.defects:
        return addresses, "its From header is malformed (" + str(header.defects[0]) + ")"
    return addresses, ""


def _sender(message) -> tuple[str, str, str]:
    """(address, display name, problem): the From address only when both parsers, anymail's
    (the legacy getaddresses) and the strict one, read the same single, usable address."""
    strict, problem = _strict_from(message)
    try:
        sender = message.from_email
    except Exception:
        sender = None
        problem = problem or "its From header cannot be parsed"
    if isinstance(sender, list) or len(strict) > 1:
        return "", "", problem or "its From header names more than one address"
    legacy = _clean(getattr(sender, "addr_spec", "")).lower()
    if not legacy and not strict:  # no From address at all (a bounce has none)
        return "", "", problem
    if not problem and (len(strict) != 1 or strict[0].lower() != legacy):
        problem = "its From header is read as two different addresses"
    addr = usable_address(legacy)
    if not problem and not addr:
        problem = (
            f"its From address is longer than {MAX_ADDRESS} characters (or its local part "
            f"than {MAX_LOCAL_PART}), or is no address"
        )
    if problem:
        return "", "", problem
    return addr, _clean(getattr(sender, "display_name", ""), 200), ""


def from_header_text(message) -> str:
    """The From header as it came, on one line and cut for display only (never an address)."""
    try:
        values = [str(value) for name, value in message.raw_items() if name.lower() == "from"]
    except Exception:
        return ""
    return re.sub(r"[\r\n\t]+", " ", _clean(", ".join(values)))[:200]


def _date(message) -> datetime | None:
    try:
        return message.date
    except Exception:
        return None


def _part_text(part) -> str:
    if part.get_content_charset() is None:
        # No charset said: US-ASCII by the RFC, UTF-8 in practice (an uploaded .txt file).
        payload = part.get_payload(decode=True) or b""
        try:
            text = payload.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = payload.decode("latin-1")
        return text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        return part.get_content_text() or ""
    except Exception:  # an unknown charset, a broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")


def _body(message) -> str:
    try:
        text = message.text
    except Exception:
        text = None
    if text is None:  # an HTML-only mail: its markup is the text (fenced as untrusted anyway)
        try:
            text = message.html or ""
        except Exception:
            text = ""
    return _clean(text)


def _filename(part, n: int) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    name = PureWindowsPath(PurePosixPath(_clean(name)).name).name
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:200] or f"attachment-{n}"


def _attachment(part, n: int) -> Attachment:
    filename = _filename(part, n)
    content_type = _clean(part.get_content_type(), 100).lower() or "application/octet-stream"
    try:
        content = part.get_content_bytes() or b""
    except Exception:
        content = b""
    attachment = Attachment(filename, content_type, len(content), content)
    if len(content) > settings.MAIL_ATTACHMENT_MAX_BYTES:
        attachment.content = b""
        attachment.note = (
            f"Not kept: {len(content)} bytes is more than MAIL_ATTACHMENT_MAX_BYTES "
            f"({settings.MAIL_ATTACHMENT_MAX_BYTES})."
        )
        return attachment
    limit = settings.MAIL_ATTACHMENT_TEXT_CHARS
    if content_type in TEXT_TYPES or content_type.startswith("text/"):
        text = _clean(_part_text(part))
    elif content_type == "application/pdf" or filename.lower().endswith(".pdf"):
        try:
            text = _clean("\n\n".join(pdf_pages(content, title=filename)))
        except IngestError as exc:
            attachment.note = str(exc)[:300]
            text = ""
    else:
        return attachment
    if len(text) > limit:
        attachment.note = f"Text cut to its first {limit} characters."
        text = text[:limit]
    attachment.text = text
    return attachment


def _attachments(message) -> list[Attachment]:
    try:
        parts = list(message.attachments)
    except Exception:
        return []
    return [_attachment(part, n) for n, part in enumerate(parts, start=1)]


def _digest(message) -> str:
    try:
        raw = message.as_bytes()
    except Exception:
        raw = str(message).encode("utf-8", errors="replace")
    return hashlib.sha256(raw).hexdigest()


def mail_parse(message) -> ParsedMail:
    """The storable fields of one parsed message (an AnymailInboundMessage)."""
    # The Message-ID header's own id; one too long is ignored (the fallback key is used).
    header_ids = MESSAGE_ID_RE.findall(_header(message, "Message-ID"))
    message_id = header_ids[0] if header_ids and len(header_ids[0]) <= MAX_MESSAGE_ID else ""
    references = _thread_chain(message_ids(_header(message, "References")))
    in_reply_to = message_ids(_header(message, "In-Reply-To"))
    sender, sender_name, sender_problem = _sender(message)
    if sender_problem:  # what the person deciding sees instead of an address
        sender_name = from_header_text(message)
    recipients = _addresses(message, ("To", "Cc", "Bcc", "Delivered-To", "X-Original-To"))
    envelope = _clean(getattr(message, "envelope_recipient", "") or "")
    if envelope:  # the ESP says which of our addresses it delivered to: that one alone
        recipients = [addr] if (addr := usable_address(envelope)) else []
    auto = _header(message, "Auto-Submitted").lower()
    return ParsedMail(
        message_id=message_id,
        sender=sender,
        sender_name=sender_name,
        sender_problem=sender_problem,
        precedence=_header(message, "Precedence").lower()[:40],
        list_id=_header(message, "List-Id")[:200],
        recipients=recipients,
        subject=_header(message, "Subject")[:500],
        sent_at=_date(message),
        text=_body(message),
        in_reply_to=in_reply_to[0] if in_reply_to else "",
        references=references,
        auto_submitted=bool(auto) and auto != "no",
        spam=bool(getattr(message, "spam_detected", False)),
        attachments=_attachments(message),
        message=message,
    )


def references_for_reply(references: list[str], message_id: str) -> list[str]:
    """The References of a reply to a message: its References and its own id (RFC 5322 3.6.4),
    the first and the latest kept when the thread is long."""
    chain = [ref for ref in references if ref != message_id] + [message_id]
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return chain
