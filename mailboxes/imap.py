"""IMAP polling of a plain mailbox (optional; the ESP webhooks need none of this).

`run_due` calls `mailboxes_poll_due` every pass: it claims each IMAP mailbox whose last poll is
older than MAIL_IMAP_POLL_SECONDS and queues one `poll_mailbox` job for it. The job logs in
over TLS, fetches the unseen messages without marking them, stores each through the same
service as the webhooks, and marks a message seen only after its row is committed: a worker
that dies in between leaves it unseen, and the next poll finds the stored row (same Message-ID).

A message that cannot be parsed or stored is logged, counted in `Mailbox.imap_failed_uids`
(UID -> failed attempts) and left unseen, and the poll goes on with the next one; after
MAX_FAILURES attempts the poll skips it, so it never blocks the folder (a person finds it still
unseen in the mailbox, and the error in `imap_error`).
"""

from __future__ import annotations

import imaplib
import logging
import ssl
from datetime import datetime, timedelta

from anymail.inbound import AnymailInboundMessage
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from aiworkforce.secrets import SecretDecryptionError, decrypt_secret
from mailboxes.models import Mailbox
from mailboxes.services import inbound_mail_receive

logger = logging.getLogger(__name__)

BATCH = 50  # messages per poll; the rest are still unseen at the next one
MAX_FAILURES = 3  # attempts at a message that cannot be stored before polls skip it
MAX_REMEMBERED = 500  # failed UIDs kept; the oldest are forgotten (and tried again)


def _imap_pollable():
    return Mailbox.objects.exclude(imap_host="").exclude(imap_password_encrypted="")


def mailboxes_poll_due(*, now: datetime | None = None) -> int:
    """Queue a poll for every IMAP mailbox that is due; returns how many were queued."""
    from django_q.tasks import async_task

    now = now or timezone.now()
    due_before = now - timedelta(seconds=settings.MAIL_IMAP_POLL_SECONDS)
    queued = 0
    candidates = _imap_pollable().filter(
        Q(imap_polled_at__isnull=True) | Q(imap_polled_at__lte=due_before)
    )
    for mailbox_id, polled_at in candidates.values_list("pk", "imap_polled_at"):
        # Claimed by its last poll time, so two passes never queue the same poll twice.
        if Mailbox.objects.filter(pk=mailbox_id, imap_polled_at=polled_at).update(
            imap_polled_at=now
        ):
            async_task("mailboxes.jobs.poll_mailbox", mailbox_id, task_name=f"poll {mailbox_id}")
            queued += 1
    return queued


def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.MAIL_IMAP_CA_FILE or None)


def _raw_message(fetched) -> bytes | None:
    for part in fetched or []:
        if isinstance(part, tuple) and len(part) == 2:
            return part[1]
    return None


def _fail(mailbox: Mailbox, error: str) -> str:
    logger.warning("IMAP poll of %s failed: %s", mailbox.address, error)
    Mailbox.objects.filter(pk=mailbox.pk).update(imap_error=error[:500])
    return f"failed: {error}"


def mailbox_poll(*, mailbox_id: int) -> str:
    """Fetch, store and mark seen the unseen messages of one mailbox's IMAP folder."""
    mailbox = Mailbox.objects.select_related("employee").filter(pk=mailbox_id).first()
    if mailbox is None or not mailbox.polls_imap:
        return "no IMAP account"
    try:
        password = decrypt_secret(mailbox.imap_password_encrypted)
    except SecretDecryptionError as exc:
        return _fail(mailbox, str(exc))
    stored = 0
    failed: dict[str, int] = dict(mailbox.imap_failed_uids or {})
    errors: list[str] = []
    try:
        with imaplib.IMAP4_SSL(
            mailbox.imap_host,
            mailbox.imap_port,
            ssl_context=_ssl_context(),
            timeout=settings.MAIL_IMAP_TIMEOUT_SECONDS,
        ) as client:
            client.login(mailbox.imap_username, password)
            status, _ = client.select(f'"{mailbox.imap_folder}"')
            if status != "OK":
                return _fail(mailbox, f"folder {mailbox.imap_folder!r} cannot be opened")
            status, data = client.uid("SEARCH", None, "UNSEEN")
            found = data[0].split() if status == "OK" and data and data[0] else []
            uids = [uid for uid in found if failed.get(uid.decode(), 0) < MAX_FAILURES][:BATCH]
            for uid in uids:
                status, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = _raw_message(fetched) if status == "OK" else None
                if raw is None:
                    continue
                if not _store_one(mailbox, uid.decode(), raw, failed, errors):
                    continue  # left unseen: tried again at the next poll, up to MAX_FAILURES
                client.uid("STORE", uid, "+FLAGS", "(\\Seen)")
                stored += 1
    except (imaplib.IMAP4.error, OSError) as exc:
        _remember(mailbox, failed)
        return _fail(mailbox, f"{type(exc).__name__}: {exc}")
    _remember(mailbox, failed)
    Mailbox.objects.filter(pk=mailbox.pk).update(imap_error="; ".join(errors)[:500])
    return f"{stored} stored" + (f", {len(errors)} failed" if errors else "")


def _store_one(mailbox: Mailbox, uid: str, raw: bytes, failed: dict, errors: list) -> bool:
    """Parse and store one fetched message; False (logged and counted) when that fails."""
    try:
        message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
        inbound_mail_receive(
            message=message,
            esp_name="IMAP",
            event_id=f"{mailbox.imap_folder}:{uid}",
            mailbox=mailbox,
        )  # committed: only now is it marked seen
    except Exception as exc:  # one bad message must not stop the poll of the others
        logger.exception("IMAP message %s of %s could not be stored", uid, mailbox.address)
        failed[uid] = failed.get(uid, 0) + 1
        skipped = " (skipped from now on)" if failed[uid] >= MAX_FAILURES else ""
        errors.append(f"message UID {uid}: {type(exc).__name__}: {exc}"[:200] + skipped)
        return False
    failed.pop(uid, None)
    return True


def _remember(mailbox: Mailbox, failed: dict[str, int]) -> None:
    if failed != mailbox.imap_failed_uids:
        kept = dict(list(failed.items())[-MAX_REMEMBERED:])
        Mailbox.objects.filter(pk=mailbox.pk).update(imap_failed_uids=kept)
