"""Recording what a person did with work a shadow employee only proposed.

There is no model for it: the record is an audit entry on the task (action "shadow.reviewed",
data: the proposal step, whether the person did the same, what they did). The audit trail is
append-only, so a correction is a newer entry; the report reads the newest per proposal.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from aiworkforce.audit import Actor, audit_log
from evaluations.shadow import REVIEW_ACTION
from tasks.models import Step

MAX_ACTION_CHARS = 2000


@transaction.atomic
def shadow_proposal_review(*, step: Step, user, agrees: bool, action: str = "") -> None:
    """Record whether a person did what the employee proposed, and if not, what they did."""
    action = action.strip()
    if step.payload.get("status") != "proposed":
        raise ValidationError("Only a proposed action can be compared with what you did.")
    if not agrees and not action:
        raise ValidationError("Say what you did instead, so the report can show both.")
    if len(action) > MAX_ACTION_CHARS:
        raise ValidationError(f"Keep it under {MAX_ACTION_CHARS:,} characters.")
    audit_log(
        action=REVIEW_ACTION,
        actor=Actor.for_user(user),
        subject=step.task,
        data={
            "employee": step.task.employee_id,
            "step": step.pk,
            "call_id": step.payload.get("call_id", ""),
            "tool": step.payload.get("name", ""),
            "agrees": agrees,
            "action": action,
        },
    )
