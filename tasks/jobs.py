"""django-q2 jobs: thin, take ids, and are safe to run twice."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from tasks.models import OutboxEmail, OutboxStatus

logger = logging.getLogger(__name__)


def run_task(task_id: int) -> str | int | None:
    """Run a task until it finishes or parks; a task another worker holds is left alone.

    With TASKS_PER_WORKER above 1 the job also runs other queued tasks next to it.
    """
    from django.conf import settings

    if settings.TASKS_PER_WORKER > 1:
        from tasks.runner import run_with_companions

        return run_with_companions(task_id, concurrency=settings.TASKS_PER_WORKER)
    from tasks.loop import run_task as loop_run_task

    return loop_run_task(task_id)


def run_due() -> dict[str, int]:
    """One batch pass: due duties, expired approvals, late delegations, runnable tasks, dead
    workers' leases, memories past their retention, documents whose reading job was lost."""
    from django.conf import settings

    from approvals.services import approvals_expire_due
    from employees.knowledge import documents_resume_stalled
    from employees.memory import memories_expire
    from employees.partitions import memory_partitions_drop_orphaned
    from tasks.delegation import delegations_wake_overdue
    from tasks.services import tasks_dispatch_waiting, tasks_reclaim_expired
    from tasks.triggers import duties_materialise

    with transaction.atomic():
        created = duties_materialise()
    expired = approvals_expire_due()  # one transaction per request
    overdue = delegations_wake_overdue()  # one transaction per waiting task
    with transaction.atomic():
        dispatched = tasks_dispatch_waiting()
    with transaction.atomic():
        reclaimed = tasks_reclaim_expired()
    return {
        "duty_tasks": created,
        "expired_approvals": expired,
        "overdue_delegations": overdue,
        "dispatched": dispatched,
        "reclaimed": reclaimed,
        "expired_memories": memories_expire(),  # recall ignores them already; this frees space
        "embedded_memories": _embed_pending_memories(),
        # After django-q2's own redelivery window (Q_RETRY) has passed without progress.
        "resumed_documents": documents_resume_stalled(
            quiet_for=timedelta(seconds=settings.Q_CLUSTER["retry"] + 60)
        ),
        "dropped_memory_partitions": memory_partitions_drop_orphaned(),
    }


def _embed_pending_memories() -> int:
    """Memories stored without a vector (an endpoint was down, or lessons from before recall
    existed) are embedded a few batches per pass, so they come back into recall by themselves."""
    from employees.embeddings import EmbeddingError
    from employees.memory import MemoryConfigurationError, memories_embed_pending

    try:
        return memories_embed_pending(max_batches=4)
    except (EmbeddingError, MemoryConfigurationError) as exc:
        logger.warning("memories not embedded: %s", exc)
        return 0


def deliver_email(outbox_id: int) -> str:
    """Send one outbox email; a row already sent or being sent is never sent again."""
    claimed = OutboxEmail.objects.filter(pk=outbox_id, status=OutboxStatus.PENDING).update(
        status=OutboxStatus.SENDING, attempts=F("attempts") + 1
    )
    if not claimed:
        return "already handled"
    email = OutboxEmail.objects.get(pk=outbox_id)
    message = EmailMessage(
        subject=email.subject,
        body=email.body,
        to=email.to,
        headers={"Message-ID": email.message_id},
    )
    try:
        message.send()
    except Exception as exc:
        logger.warning("email %s failed: %s", outbox_id, exc)
        # Back to pending for a later attempt, up to three, then failed for a person to see.
        status = OutboxStatus.FAILED if email.attempts >= 3 else OutboxStatus.PENDING
        OutboxEmail.objects.filter(pk=outbox_id).update(status=status, error=str(exc)[:2000])
        raise
    OutboxEmail.objects.filter(pk=outbox_id).update(
        status=OutboxStatus.SENT, sent_at=timezone.now()
    )
    return "sent"
