"""The outbox of mail employees send: every change of an OutboxEmail's state.

A row is written in the step's transaction (`outbox_email_create`) and a job is queued on
commit for the first attempt (`outbox_deliver`). Whatever that job does not finish — it was
never queued (a worker died between commit and enqueue), the server was down, a worker died
mid-send — `outbox_sweep` (called by `run_due` every minute) tries again with exponential
backoff, until OUTBOX_MAX_ATTEMPTS; then the row is failed, audited and the task's managers are
told. Each state change is a compare-and-swap on (status, attempts), so two sweeps or a sweep
and a job never both send one attempt; the Message-ID is built from the call key, so a retry
after an unknown outcome carries the same one and a receiver can recognise it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import datetime, timedelta
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from approvals.notifications import SUBJECT_PREFIX, absolute_url
from employees.selectors import managers_to_notify
from mailboxes.selectors import mail_from_address, mail_reply_headers
from tasks.models import OutboxEmail, OutboxStatus, Task

logger = logging.getLogger(__name__)

# run_due runs every minute: a sweep stops taking new rows after this long, so a slow or
# black-holed mail server never holds the batch pass (each attempt waits up to EMAIL_TIMEOUT).
SWEEP_SECONDS = 30
SWEEP_BATCH = 200
_MAX_BACKOFF = timedelta(hours=1)
_ERROR_CHARS = 2000


def outbox_message_id(*, task_id: int, call_id: str, from_email: str = "") -> str:
    """The Message-ID of a tool call's email: the same for every attempt, unique per call,
    in the domain of its From address (DEFAULT_FROM_EMAIL unless given)."""
    local = re.sub(r"[^A-Za-z0-9_-]+", "-", call_id).strip("-")[:64] or "call"
    if local != call_id:  # two ids that sanitise alike stay apart
        local = f"{local}-{hashlib.sha256(call_id.encode()).hexdigest()[:12]}"
    domain = parseaddr(from_email or settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]
    domain = re.sub(r"[^A-Za-z0-9.-]+", "", domain).strip(".") or "aiworkforce"
    return f"<task{task_id}.{local}@{domain}>"


def outbox_email_create(
    *,
    task: Task,
    call_id: str,
    to: list[str],
    subject: str,
    body: str,
    in_reply_to: str | None = None,
) -> OutboxEmail:
    """Write an email to the outbox in the caller's transaction; its first attempt is queued
    on commit, and the sweep takes it if that job never runs.

    It is sent from the employee's mailbox address when it has an open one, and threaded
    (In-Reply-To, References) to `in_reply_to`, or else to the mail the task came from when
    it goes to that mail's sender; ValueError for an `in_reply_to` the employee never saw.
    """
    now = timezone.now()
    from_email = mail_from_address(task.employee)
    replying_to, references = mail_reply_headers(task=task, to=to, in_reply_to=in_reply_to)
    email = OutboxEmail.objects.create(
        task=task,
        call_key=f"{task.pk}:{call_id}",
        to=to,
        subject=subject,
        body=body,
        message_id=outbox_message_id(task_id=task.pk, call_id=call_id, from_email=from_email),
        from_email="" if from_email == settings.DEFAULT_FROM_EMAIL else from_email,
        in_reply_to=replying_to,
        references=references,
        # The queued job normally sends it within a second; the sweep waits one backoff.
        next_attempt_at=now + timedelta(seconds=settings.OUTBOX_BACKOFF_SECONDS),
    )
    transaction.on_commit(lambda: _enqueue("tasks.jobs.deliver_email", email.pk, "deliver"))
    return email


def _enqueue(func: str, outbox_id: int, verb: str) -> None:
    from django_q.tasks import async_task

    async_task(func, outbox_id, task_name=f"{verb} email {outbox_id}")


def outbox_backoff(attempts: int) -> timedelta:
    """How long to wait after the attempts-th failed attempt: doubling, at most an hour."""
    base = timedelta(seconds=settings.OUTBOX_BACKOFF_SECONDS)
    return min(base * 2 ** (attempts - 1), max(base, _MAX_BACKOFF))


def outbox_claim(*, email: OutboxEmail, now: datetime) -> bool:
    """Take a pending (or dead sending) row for one attempt; False if someone else did."""
    if email.status not in (OutboxStatus.PENDING, OutboxStatus.SENDING):
        return False
    changes = {
        "status": OutboxStatus.SENDING,
        "attempts": email.attempts + 1,
        "last_attempt_at": now,
        "next_attempt_at": None,
    }
    if email.status == OutboxStatus.SENDING:
        changes["error"] = _unfinished(email)
    claimed = OutboxEmail.objects.filter(
        pk=email.pk, status=email.status, attempts=email.attempts
    ).update(**changes)
    if claimed:
        for field, value in changes.items():
            setattr(email, field, value)
    return bool(claimed)


def _unfinished(email: OutboxEmail) -> str:
    return (
        f"Attempt {email.attempts} did not finish within "
        f"{settings.OUTBOX_SENDING_TIMEOUT_SECONDS} s (the worker stopped?); whether it "
        "reached the server is unknown."
    )


def outbox_mark_sent(*, email: OutboxEmail, now: datetime) -> bool:
    """Record a successful SMTP transaction.

    Any attempt's success counts, also one a sweep took for dead meanwhile: the mail is out.
    """
    sent = OutboxEmail.objects.filter(
        pk=email.pk, status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]
    ).update(status=OutboxStatus.SENT, sent_at=now, next_attempt_at=None)
    return bool(sent)


def outbox_mark_failed(*, email: OutboxEmail, error: str, now: datetime) -> str:
    """Record the failure of the attempt this caller claimed: "retry" later, or "failed"."""
    if email.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        return "failed" if outbox_give_up(email=email, error=error, now=now) else "already handled"
    retried = OutboxEmail.objects.filter(
        pk=email.pk, status=OutboxStatus.SENDING, attempts=email.attempts
    ).update(
        status=OutboxStatus.PENDING,
        next_attempt_at=now + outbox_backoff(email.attempts),
        error=error[:_ERROR_CHARS],
    )
    return "retry" if retried else "already handled"


def outbox_give_up(*, email: OutboxEmail, error: str, now: datetime) -> bool:
    """Fail a row whose attempts are used up; audited, and the task's managers are told."""
    with transaction.atomic():
        failed = OutboxEmail.objects.filter(
            pk=email.pk, status=email.status, attempts=email.attempts
        ).update(
            status=OutboxStatus.FAILED,
            # Now only the managers' notice is due: the sweep sends it again from then on
            # if the job queued below could not.
            next_attempt_at=now + _MAX_BACKOFF,
            error=error[:_ERROR_CHARS],
        )
        if not failed:
            return False
        audit_log(
            action="outbox.given_up",
            actor=Actor.system("outbox"),
            subject=email,
            data={
                "task": email.task_id,
                "to": email.to,
                "attempts": email.attempts,
                "error": error[:500],
            },
        )
        transaction.on_commit(
            lambda: _enqueue("tasks.jobs.notify_outbox_failed", email.pk, "report")
        )
    email.status = OutboxStatus.FAILED
    return True


def _attempt(email: OutboxEmail, now: datetime) -> str:
    """One SMTP transaction for a claimed row: "sent", "retry" or "failed"."""
    # Auto-Submitted (RFC 3834): an autoresponder does not answer it, so no mail loop starts.
    headers = {"Message-ID": email.message_id, "Auto-Submitted": "auto-generated"}
    if email.in_reply_to:
        headers["In-Reply-To"] = email.in_reply_to
        headers["References"] = email.references or email.in_reply_to
    message = EmailMessage(
        subject=email.subject,
        body=email.body,
        from_email=email.from_email or None,
        to=email.to,
        headers=headers,
    )
    try:
        message.send()
    except Exception as exc:
        logger.warning("email %s, attempt %s failed: %s", email.pk, email.attempts, exc)
        error = f"{type(exc).__name__}: {exc}"
        return outbox_mark_failed(email=email, error=error, now=now)
    outbox_mark_sent(email=email, now=now)
    return "sent"


def outbox_deliver(*, outbox_id: int, now: datetime | None = None) -> str:
    """The queued first attempt; a row already sent, being sent or backing off is left alone."""
    now = now or timezone.now()
    email = OutboxEmail.objects.filter(pk=outbox_id).first()
    if email is None or email.status != OutboxStatus.PENDING:
        return "already handled"
    if email.attempts and email.next_attempt_at and email.next_attempt_at > now:
        return "not due yet"  # a redelivered job does not jump the backoff
    if not outbox_claim(email=email, now=now):
        return "already handled"
    return _attempt(email, now)


def _due(now: datetime) -> Q:
    stale = now - timedelta(seconds=settings.OUTBOX_SENDING_TIMEOUT_SECONDS)
    pending = Q(status=OutboxStatus.PENDING) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    # No attempt time: claimed by a worker older than these fields; its row's age stands in.
    dead = Q(status=OutboxStatus.SENDING) & (
        Q(last_attempt_at__lte=stale) | Q(last_attempt_at__isnull=True, created_at__lte=stale)
    )
    return pending | dead


def outbox_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Try again every email that is due: pending past its backoff (or never queued), or
    sending for longer than the timeout; give up those out of attempts."""
    now = now or timezone.now()
    started = time.monotonic()
    counts = {"sent": 0, "retry": 0, "failed": 0}
    due = OutboxEmail.objects.filter(_due(now)).order_by(
        F("next_attempt_at").asc(nulls_first=True), "pk"
    )
    for email in due[:SWEEP_BATCH]:
        if time.monotonic() - started > SWEEP_SECONDS:
            return counts  # the rest are still due at the next pass
        if email.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
            error = _unfinished(email) if email.status == OutboxStatus.SENDING else email.error
            counts["failed"] += outbox_give_up(email=email, error=error, now=now)
        elif outbox_claim(email=email, now=now):
            outcome = _attempt(email, now)
            if outcome in counts:
                counts[outcome] += 1
    unnotified = OutboxEmail.objects.filter(
        status=OutboxStatus.FAILED, managers_notified_at__isnull=True, next_attempt_at__lte=now
    ).values_list("pk", "next_attempt_at")
    for outbox_id, due_at in unnotified[:SWEEP_BATCH]:
        if time.monotonic() - started > SWEEP_SECONDS:
            break
        # The notice could not be sent when the row was given up (the server was down too?).
        if OutboxEmail.objects.filter(pk=outbox_id, next_attempt_at=due_at).update(
            next_attempt_at=now + _MAX_BACKOFF
        ):
            try:
                outbox_notify_managers(outbox_id=outbox_id)
            except Exception as exc:
                logger.warning("notice about email %s not sent: %s", outbox_id, exc)
    return counts


def outbox_failure_recipients(email: OutboxEmail):
    """The people who manage the task's employee: its manager and its team's managers."""
    return managers_to_notify(email.task.employee)


def outbox_failure_email(email: OutboxEmail) -> tuple[str, str]:
    """Subject and body of the message that tells managers an email was given up."""
    task, employee = email.task, email.task.employee
    subject = f"{SUBJECT_PREFIX} An email from {employee.name} could not be delivered"
    lines = [
        f"{employee.name} (@{employee.handle}, team {employee.team.name}) sent an email on task "
        f"#{task.pk}: {task.title}",
        f"It could not be delivered after {email.attempts} attempts; nothing more will be tried.",
        "",
        f"  To: {', '.join(email.to)}",
        f"  Subject: {email.subject}",
        f"  Last error: {email.error or '(none recorded)'}",
        "",
        f"The task page shows it: {absolute_url(reverse('tasks:detail', args=[task.pk]))}",
    ]
    return subject, "\n".join(lines) + "\n"


def outbox_notify_managers(*, outbox_id: int) -> str:
    """Tell the task's managers, once, that an email was given up."""
    now = timezone.now()
    # Claim first, so two runs of this job never both send.
    claimed = OutboxEmail.objects.filter(
        pk=outbox_id, status=OutboxStatus.FAILED, managers_notified_at__isnull=True
    ).update(managers_notified_at=now)
    if not claimed:
        return "already notified, or not failed"
    email = OutboxEmail.objects.select_related("task__employee__team").get(pk=outbox_id)
    subject, body = outbox_failure_email(email)
    addresses = list(outbox_failure_recipients(email).values_list("email", flat=True))
    try:
        for address in addresses:
            EmailMessage(
                subject=subject,
                body=body,
                to=[address],
                headers={"Auto-Submitted": "auto-generated"},
            ).send()
    except Exception:
        # Give the claim back for a retry of the job: a second notice beats none.
        OutboxEmail.objects.filter(pk=outbox_id, managers_notified_at=now).update(
            managers_notified_at=None
        )
        raise
    return f"sent to {len(addresses)}"
