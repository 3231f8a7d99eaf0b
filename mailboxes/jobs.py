"""django-q2 jobs of the mailboxes: thin, take ids, and are safe to run twice."""

from __future__ import annotations

from mailboxes.imap import mailbox_poll
from mailboxes.models import InboundMail
from mailboxes.notices import held_mail_digests, held_mail_notify


def notify_held_mail(mail_id: int) -> str:
    """Tell the managers about a held mail, with the mailbox's others not told yet (at most one
    notice per mailbox an hour; a second run finds them told)."""
    mailbox_id = InboundMail.objects.filter(pk=mail_id).values_list("mailbox_id", flat=True).first()
    if mailbox_id is None:
        return "no such mail"
    return held_mail_notify(mailbox_id=mailbox_id)


def send_held_mail_digests() -> dict[str, int]:
    """Scheduled: tell managers of held mail that waited for the hour to pass."""
    return held_mail_digests()


def poll_mailbox(mailbox_id: int) -> str:
    """Fetch a mailbox's unseen messages over IMAP (a second poll finds them stored)."""
    return mailbox_poll(mailbox_id=mailbox_id)
