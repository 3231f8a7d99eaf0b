"""An employee's mailbox (Mailbox), the mail it received (InboundMail) and that mail's files
(InboundAttachment). What the employee sends is tasks.OutboxEmail."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


class MailboxStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed (mail is held for a person)"


class Mailbox(models.Model):
    """The address an employee receives mail at, and who may write to it."""

    employee = models.OneToOneField(
        "employees.Employee", on_delete=models.PROTECT, related_name="mailbox"
    )
    # Stored in lower case (mailbox_set does it); unique whatever the case.
    address = models.CharField(max_length=254)
    allowed_senders = models.JSONField(
        default=list,
        blank=True,
        help_text='Domains ("example.com", "*.example.com") or addresses ("ana@example.com") '
        "whose mail runs as a task; mail from anyone else is held or dropped.",
    )
    status = models.CharField(
        max_length=6, choices=MailboxStatus.choices, default=MailboxStatus.OPEN
    )
    # Optional IMAP polling of a plain mailbox (TLS only); the password is stored encrypted.
    imap_host = models.CharField(max_length=253, blank=True)
    imap_port = models.PositiveIntegerField(default=993)
    imap_username = models.CharField(max_length=254, blank=True)
    imap_password_encrypted = models.TextField(blank=True, editable=False)
    imap_folder = models.CharField(max_length=200, default="INBOX")
    imap_polled_at = models.DateTimeField(null=True, blank=True)
    imap_error = models.CharField(max_length=500, blank=True)
    # UID -> failed attempts, for messages of the folder that could not be stored: after
    # IMAP_MAX_FAILURES one is skipped (left unseen) so it never blocks the others.
    imap_failed_uids = models.JSONField(default=dict, blank=True, editable=False)
    # When the managers were last told of held mail (at most one notice an hour).
    held_notified_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["address"]
        verbose_name_plural = "mailboxes"
        constraints = [
            models.UniqueConstraint(Lower("address"), name="mailbox_address_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.address

    @property
    def polls_imap(self) -> bool:
        return bool(self.imap_host and self.imap_username and self.imap_password_encrypted)


class InboundStatus(models.TextChoices):
    RUN = "run", "Run as a task"
    HELD = "held", "Held for a person"
    DROPPED = "dropped", "Dropped"


class InboundMail(models.Model):
    """One message received by one mailbox; untrusted data, like a webhook's body."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.PROTECT, related_name="inbound")
    # The Message-ID, else the provider's event id, else a digest of the message: a second
    # delivery of the same message (an ESP's retry, a second IMAP poll) finds this row.
    message_key = models.CharField(max_length=200)
    message_id = models.CharField(max_length=500, blank=True, db_index=True)
    provider = models.CharField(max_length=40, help_text="The ESP it came through, or IMAP.")
    provider_event_id = models.CharField(max_length=200, blank=True)
    sender = models.CharField(max_length=254, blank=True, help_text="The From address.")
    sender_name = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="The Date header.")
    text = models.TextField(blank=True)
    in_reply_to = models.CharField(max_length=500, blank=True)
    references = models.TextField(blank=True)
    status = models.CharField(max_length=7, choices=InboundStatus.choices, db_index=True)
    reason = models.CharField(max_length=300, blank=True)
    task = models.ForeignKey(
        "tasks.Task",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="inbound_mails",
    )
    # A reply to a message of an earlier task: the conversation it continues.
    replies_to = models.ForeignKey(
        "tasks.Task",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="mail_replies",
    )
    received_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    managers_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "inbound email"
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "message_key"], name="one_inbound_mail_per_message"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} from {self.sender or '?'}"


class InboundAttachment(models.Model):
    """A file that came with a mail; one of its task's documents once the mail runs."""

    mail = models.ForeignKey(InboundMail, on_delete=models.CASCADE, related_name="attachments")
    task = models.ForeignKey(
        "tasks.Task",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="mail_attachments",
    )
    filename = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    # In the database, so a mail and its files are written (or not) in one transaction.
    content = models.BinaryField(blank=True, editable=False)
    text = models.TextField(blank=True, help_text="The text read from it (text and PDF files).")
    note = models.CharField(max_length=300, blank=True, help_text="Why no text or content.")

    class Meta:
        ordering = ["mail", "pk"]

    def __str__(self) -> str:
        return self.filename
