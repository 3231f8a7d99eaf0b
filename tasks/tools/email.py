"""send_email: writes to the outbox in the step's transaction; a job delivers it."""

from __future__ import annotations

from django.db import transaction
from django.utils.crypto import get_random_string

from tasks.tools.registry import ToolContext
from tasks.tools.scopes import domain_allowed


def check_scope(arguments: dict, scope: dict) -> str | None:
    allowed = scope.get("allowed_domains", [])
    outside = [
        address
        for address in arguments["to"]
        if not domain_allowed(address.rpartition("@")[2], allowed)
    ]
    if outside:
        return (
            f"Recipients outside the allowed domains ({', '.join(allowed) or 'none'}): "
            f"{', '.join(outside)}."
        )
    return None


def execute(context: ToolContext, arguments: dict) -> dict:
    from tasks.models import OutboxEmail

    email = OutboxEmail.objects.create(
        task=context.task,
        call_key=f"{context.task.pk}:{context.call_id}",
        to=arguments["to"],
        subject=arguments["subject"],
        body=arguments["body"],
        # A stable Message-ID lets receiving servers drop a duplicate if delivery is retried.
        message_id=f"<task{context.task.pk}.{get_random_string(16)}@aiworkforce>",
    )
    transaction.on_commit(lambda: _enqueue_delivery(email.pk))
    return {
        "status": "queued",
        "outbox_id": email.pk,
        "summary": f"email '{email.subject}' to {', '.join(email.to)} queued for delivery",
    }


def _enqueue_delivery(outbox_id: int) -> None:
    from django_q.tasks import async_task

    async_task("tasks.jobs.deliver_email", outbox_id, task_name=f"deliver email {outbox_id}")
