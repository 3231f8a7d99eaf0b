"""send_email: writes to the outbox in the step's transaction; a job delivers it, and the
outbox sweep retries what it could not (tasks/outbox.py)."""

from __future__ import annotations

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
    from tasks.outbox import outbox_email_create

    email = outbox_email_create(
        task=context.task,
        call_id=context.call_id,
        to=arguments["to"],
        subject=arguments["subject"],
        body=arguments["body"],
    )
    return {
        "status": "queued",
        "outbox_id": email.pk,
        "summary": f"email '{email.subject}' to {', '.join(email.to)} queued for delivery",
    }
