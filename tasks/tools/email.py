"""send_email: writes to the outbox in the step's transaction; a job delivers it, and the
outbox sweep retries what it could not (tasks/outbox.py). From the employee's own address when
it has a mailbox; a reply to a mail is threaded to it (mailboxes.selectors.mail_reply_headers)."""

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
    from mailboxes.selectors import SenderAddressError, UnknownReplyTarget
    from tasks.outbox import outbox_email_create

    if any(ch in arguments["subject"] for ch in "\r\n"):
        # The mail server would refuse it at every attempt (a header is one line).
        return {"error": "subject must be one line: it contains a line break."}
    try:
        email = outbox_email_create(
            task=context.task,
            call_id=context.call_id,
            to=arguments["to"],
            subject=arguments["subject"],
            body=arguments["body"],
            in_reply_to=arguments.get("in_reply_to"),
        )
    except UnknownReplyTarget as exc:  # an in_reply_to this employee never sent or received
        return {"error": str(exc)}
    except SenderAddressError as exc:  # the employee's own From, not the model's arguments
        return {"error": f"{exc} Ask a person to fix the employee's name or mailbox."}
    return {
        "status": "queued",
        "outbox_id": email.pk,
        "summary": f"email '{email.subject}' to {', '.join(email.to)} queued for delivery",
    }
