"""Telling managers about held mail: at most one notice per mailbox per hour.

A simple rate limit with a digest: when a mail is held and the mailbox's last notice is older
than NOTICE_INTERVAL, one notice goes out at once listing every held mail of that mailbox not
told yet. A mail held within the hour waits: the `held-mail-digest` schedule (every ten
minutes) sends the rest in one notice once the hour is over. A flood of held mail is one
notice an hour per mailbox, never one per mail.

Each mail's link goes to its back-office page, absolute (SITE_URL), as mail is read elsewhere.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.mail import EmailMessage
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from approvals.notifications import SUBJECT_PREFIX, absolute_url
from employees.models import Employee
from employees.selectors import managers_to_notify
from mailboxes.models import InboundMail, InboundStatus, Mailbox

logger = logging.getLogger(__name__)

NOTICE_INTERVAL = timedelta(hours=1)
LISTED = 20  # mails listed in one notice; the rest are counted
HEADERS = {"Auto-Submitted": "auto-generated"}  # RFC 3834: no auto-reply to a notice


def held_mail_recipients(employee: Employee):
    """The people who decide on an employee's held mail: its manager and its team's managers."""
    return managers_to_notify(employee)


def _untold(mailbox_id: int):
    return InboundMail.objects.filter(
        mailbox_id=mailbox_id, status=InboundStatus.HELD, managers_notified_at__isnull=True
    )


def _notice(mailbox: Mailbox, mails: list[InboundMail], count: int) -> tuple[str, str]:
    employee = mailbox.employee
    subject = f"{SUBJECT_PREFIX} {count} mail(s) to {employee.name} held for you"
    lines = [
        f"{count} mail(s) to {mailbox.address} (@{employee.handle}) were not run as tasks. "
        "Run or drop each in the back office:",
        "",
    ]
    for mail in mails:
        lines += [
            f"- From: {mail.sender or mail.sender_name or '(unknown)'}",
            f"  Subject: {mail.subject or '(none)'}",
            *([f"  Why: {mail.reason}"] if mail.reason.strip() else []),
            f"  {absolute_url(reverse('admin:mailboxes_inboundmail_change', args=[mail.pk]))}",
        ]
    if count > len(mails):
        lines += ["", f"... and {count - len(mails)} more."]
    lines += ["", f"At most one such notice is sent per mailbox every {NOTICE_INTERVAL}."]
    return subject, "\n".join(lines) + "\n"


def held_mail_notify(*, mailbox_id: int, now: datetime | None = None) -> str:
    """Tell a mailbox's managers, in one notice, of its held mail not told yet; nothing when a
    notice went out within NOTICE_INTERVAL (the digest schedule tells them later)."""
    now = now or timezone.now()
    if not _untold(mailbox_id).exists():
        return "nothing to tell"
    mailbox = Mailbox.objects.select_related("employee").get(pk=mailbox_id)
    last = mailbox.held_notified_at
    if last is not None and last > now - NOTICE_INTERVAL:
        return "told within the hour: the digest tells the rest"
    # Claim the hour by the last notice's time: two jobs never both send.
    if not Mailbox.objects.filter(pk=mailbox_id, held_notified_at=last).update(
        held_notified_at=now
    ):
        return "another job is telling"
    ids = list(_untold(mailbox_id).values_list("pk", flat=True))
    _untold(mailbox_id).filter(pk__in=ids).update(managers_notified_at=now)
    claimed = InboundMail.objects.filter(pk__in=ids, managers_notified_at=now)
    count = claimed.count()
    subject, body = _notice(mailbox, list(claimed.order_by("received_at", "pk")[:LISTED]), count)
    addresses = list(held_mail_recipients(mailbox.employee).values_list("email", flat=True))
    try:
        for address in addresses:
            EmailMessage(subject=subject, body=body, to=[address], headers=HEADERS).send()
    except Exception:
        # Give both claims back, so a retry tells them: a second notice beats none.
        claimed.update(managers_notified_at=None)
        Mailbox.objects.filter(pk=mailbox_id, held_notified_at=now).update(held_notified_at=last)
        raise
    return f"{count} mail(s) told to {len(addresses)}"


def held_mail_digests(*, now: datetime | None = None) -> dict[str, int]:
    """The scheduled digest: tell every mailbox's managers of held mail not told yet, for
    each mailbox whose last notice is older than NOTICE_INTERVAL."""
    now = now or timezone.now()
    counts = {"sent": 0, "failed": 0}
    mailbox_ids = (
        InboundMail.objects.filter(status=InboundStatus.HELD, managers_notified_at__isnull=True)
        .filter(
            Q(mailbox__held_notified_at__isnull=True)
            | Q(mailbox__held_notified_at__lte=now - NOTICE_INTERVAL)
        )
        .values_list("mailbox_id", flat=True)
        .distinct()
    )
    for mailbox_id in mailbox_ids:
        try:
            outcome = held_mail_notify(mailbox_id=mailbox_id, now=now)
        except Exception as exc:  # one mailbox's failure does not stop the others
            logger.warning("held-mail notice for mailbox %s not sent: %s", mailbox_id, exc)
            counts["failed"] += 1
        else:
            counts["sent"] += " told to " in outcome
    return counts
