"""django-q2 jobs: thin, take ids, and are safe to run twice."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction

from tasks.outbox import outbox_deliver, outbox_notify_managers, outbox_sweep

logger = logging.getLogger(__name__)


def run_task(task_id: int) -> str | int | None:
    """Run a task until it finishes or parks; a task another worker holds is left alone.

    A task whose worker died (its lease ran out) is taken over first: its run was queued
    again behind every job queued since. With TASKS_PER_WORKER above 1 the job also runs other
    queued tasks next to it (those first, too).
    """
    from django.conf import settings

    if settings.TASKS_PER_WORKER > 1:
        from tasks.runner import run_with_companions

        return run_with_companions(task_id, concurrency=settings.TASKS_PER_WORKER)
    from tasks.claims import expired_leases
    from tasks.loop import run_task as loop_run_task

    for abandoned in expired_leases(limit=1):
        if abandoned != task_id:
            loop_run_task(abandoned)
    return loop_run_task(task_id)


def run_due() -> dict[str, int]:
    """One batch pass: due duties, expired approvals, late delegations, runnable tasks, dead
    workers' leases, memories past their retention, documents whose reading job was lost,
    outbox emails to try again, and MCP servers whose granted tools may have changed."""
    from django.conf import settings

    from anomalies.services import anomalies_evaluate
    from approvals.services import approvals_expire_due
    from employees.memory.ingest import documents_resume_stalled
    from employees.memory.partitions import memory_partitions_drop_orphaned
    from employees.memory.services import memories_expire
    from mailboxes.imap import mailboxes_poll_due
    from tasks.mcp.services import mcp_servers_check_due
    from tasks.services import (
        delegations_wake_overdue,
        tasks_dispatch_waiting,
        tasks_reclaim_expired,
    )
    from tasks.triggers import duties_materialise

    with transaction.atomic():
        created = duties_materialise()
    expired = approvals_expire_due()  # one transaction per request
    overdue = delegations_wake_overdue()  # one transaction per waiting task
    with transaction.atomic():
        dispatched = tasks_dispatch_waiting()
    with transaction.atomic():
        reclaimed = tasks_reclaim_expired()
    paused = anomalies_evaluate()  # the anomaly rules; one transaction per pause
    outbox = outbox_sweep()  # its own statements; may wait on the mail server, so not sooner
    return {
        "duty_tasks": created,
        "expired_approvals": expired,
        "overdue_delegations": overdue,
        "dispatched": dispatched,
        "reclaimed": reclaimed,
        "paused_by_anomaly_rules": paused,
        "expired_memories": memories_expire(),  # recall ignores them already; this frees space
        "embedded_memories": _embed_pending_memories(),
        # After django-q2's own redelivery window (Q_RETRY) has passed without progress.
        "resumed_documents": documents_resume_stalled(
            quiet_for=timedelta(seconds=settings.Q_CLUSTER["retry"] + 60)
        ),
        "dropped_memory_partitions": memory_partitions_drop_orphaned(),
        "emails_sent": outbox["sent"],
        "emails_retrying": outbox["retry"],
        "emails_failed": outbox["failed"],
        "mailbox_polls_queued": mailboxes_poll_due(),  # IMAP mailboxes: one job each
        "suspended_mcp_grants": mcp_servers_check_due(),  # may wait on the servers: last
    }


def _embed_pending_memories() -> int:
    """Memories stored without a vector (an endpoint was down, or lessons from before recall
    existed) are embedded a few batches per pass, so they come back into recall by themselves."""
    from employees.memory.embeddings import EmbeddingError
    from employees.memory.services import memories_embed_pending
    from employees.memory.vectors import MemoryConfigurationError

    try:
        return memories_embed_pending(max_batches=4)
    except (EmbeddingError, MemoryConfigurationError) as exc:
        logger.warning("memories not embedded: %s", exc)
        return 0


def deliver_email(outbox_id: int) -> str:
    """The first attempt at one outbox email; a row already sent or being sent is left alone
    (the run_due sweep makes the later attempts)."""
    return outbox_deliver(outbox_id=outbox_id)


def notify_outbox_failed(outbox_id: int) -> str:
    """Tell the task's managers, once, that one of its emails was given up."""
    return outbox_notify_managers(outbox_id=outbox_id)


def cluster_probe() -> str:
    """Nothing: the cluster supervisor queues it to see whether a worker still starts jobs."""
    return "ok"
