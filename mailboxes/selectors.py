"""Reads about mail: an employee's sending address, and which earlier task a message belongs to
(by the Message-IDs the employee sent, tasks.OutboxEmail, or received, InboundMail)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr

from django.conf import settings

from employees.models import Employee
from mailboxes.models import InboundMail, InboundStatus, Mailbox, MailboxStatus
from mailboxes.parsing import message_ids, references_for_reply
from tasks.models import OutboxEmail, Task

EXCERPT_CHARS = 2000


class UnknownReplyTarget(ValueError):
    """An in_reply_to that names no message the employee sent or received."""


class SenderAddressError(ValueError):
    """The employee's From cannot be written as a header."""


@dataclass(frozen=True)
class ThreadMessage:
    """A message of an earlier task that a new mail names in In-Reply-To or References."""

    task: Task
    message_id: str
    subject: str
    excerpt: str
    references: list[str]
    sent_by_employee: bool


def mailbox_open_for(employee: Employee) -> Mailbox | None:
    """The employee's mailbox, if it has one and it is open."""
    return Mailbox.objects.filter(employee=employee, status=MailboxStatus.OPEN).first()


def mail_from_address(employee: Employee) -> str:
    """From for the employee's mail: its own address when its mailbox is open."""
    mailbox = mailbox_open_for(employee)
    if mailbox is None:
        return settings.DEFAULT_FROM_EMAIL
    local, _, domain = mailbox.address.rpartition("@")
    # A name is the employee's, set by people: line breaks or control characters in it would
    # make Address refuse it (a header cannot hold them), so they become spaces.
    name = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", employee.name).split())
    try:
        return str(Address(display_name=name, username=local, domain=domain))
    except (ValueError, IndexError) as exc:  # the email package's refusals
        raise SenderAddressError(
            f"The From header for {mailbox.address} cannot be written: {exc}"
        ) from None


def _addr_spec(value: str) -> str:
    return parseaddr(value or "")[1].strip().lower()


def _sent(employee: Employee, ids: list[str], party: str | None) -> dict[str, ThreadMessage]:
    rows = OutboxEmail.objects.filter(task__employee=employee, message_id__in=ids).select_related(
        "task"
    )
    if party is not None:  # only a message that went to that address
        rows = [row for row in rows if party in {_addr_spec(to) for to in row.to or []}]
    return {
        row.message_id: ThreadMessage(
            task=row.task,
            message_id=row.message_id,
            subject=row.subject,
            excerpt=row.body[:EXCERPT_CHARS],
            references=message_ids(row.references),
            sent_by_employee=True,
        )
        for row in rows
    }


def _received(employee: Employee, ids: list[str], party: str | None) -> dict[str, ThreadMessage]:
    rows = InboundMail.objects.filter(
        mailbox__employee=employee, message_id__in=ids, task__isnull=False
    )
    if party is not None:  # only a message that came from that address
        rows = rows.filter(sender=party)
    rows = rows.exclude(status=InboundStatus.DROPPED).select_related("task").order_by("received_at")
    found: dict[str, ThreadMessage] = {}
    for row in rows:
        found.setdefault(
            row.message_id,
            ThreadMessage(
                task=row.task,
                message_id=row.message_id,
                subject=row.subject,
                excerpt=row.text[:EXCERPT_CHARS],
                references=message_ids(row.references),
                sent_by_employee=False,
            ),
        )
    return found


def mail_thread_message(
    *, employee: Employee, ids: list[str], party: str | None = None
) -> ThreadMessage | None:
    """The latest of `ids` (In-Reply-To first, then References from the end) that the
    employee sent or received on a task; None for a new conversation.

    With `party` (an inbound mail's sender), only a message that address took part in: one the
    employee sent to it, or received from it. Anyone can name any Message-ID they have seen;
    naming one must not put a stranger's mail into someone else's conversation.
    """
    ids = [i for i in dict.fromkeys(ids) if i]
    if party is not None:
        party = _addr_spec(party)
        if not party:
            return None
    if not ids:
        return None
    known = {**_received(employee, ids, party), **_sent(employee, ids, party)}
    for message_id in ids:
        if message_id in known:
            return known[message_id]
    return None


def mail_reply_headers(
    *, task: Task, to: list[str], in_reply_to: str | None = None
) -> tuple[str, str]:
    """(In-Reply-To, References) for an email the task sends; ("", "") when it starts a thread.

    With `in_reply_to` the employee names the message it answers (one it sent or received;
    UnknownReplyTarget otherwise). Without it, a reply from a task that came in by mail to that
    mail's sender is threaded to it.
    """
    if in_reply_to:
        ids = message_ids(in_reply_to)
        found = mail_thread_message(employee=task.employee, ids=ids[:1])
        if found is None:
            raise UnknownReplyTarget(
                f"in_reply_to {in_reply_to[:100]!r} is not the Message-ID of a mail this "
                "employee sent or received."
            )
        return found.message_id, " ".join(references_for_reply(found.references, found.message_id))
    recipients = {address.strip().lower() for address in to}
    mail = (
        InboundMail.objects.filter(task=task, sender__in=recipients)
        .exclude(message_id="")
        .order_by("-received_at")
        .first()
    )
    if mail is None:
        return "", ""
    chain = references_for_reply(message_ids(mail.references), mail.message_id)
    return mail.message_id, " ".join(chain)
