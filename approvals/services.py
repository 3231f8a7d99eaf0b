"""Asking people and recording their decisions; a decision resumes the task."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from aiworkforce.storable import validate_storable
from approvals.models import (
    ApprovalKind,
    ApprovalRequest,
    ApprovalStatus,
    Escalation,
    EscalationStatus,
)
from employees.models import Employee, MemoryEntry, MemoryKind
from tasks.models import DailySpend, Task, TaskStatus
from tasks.tools import Risk, get_tool, validate_arguments


class DecisionConflict(Exception):
    """Someone else decided first; the message says who and when."""


# What the employee proposed (or an escalation it wrote) may echo untrusted task input, and a
# lesson ends up in every later system prompt: quote only a short piece of it.
_QUOTED_CHARS = 80


def _enqueue_notification(approval: ApprovalRequest) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "approvals.jobs.notify_new_approval",
            approval.pk,
            task_name=f"notify approval {approval.pk}",
            group="notifications",
        )
    )


def approval_request_create(
    *, task: Task, tool_name: str, arguments: dict, risk: str, reason: str, call_id: str
) -> ApprovalRequest:
    """Ask a person to approve one tool call before it runs."""
    approval = ApprovalRequest.objects.create(
        task=task,
        employee=task.employee,
        kind=ApprovalKind.TOOL_CALL,
        tool_name=tool_name,
        arguments=arguments,
        reason=reason[:2000],
        risk=risk,
        deadline=timezone.now() + timedelta(hours=settings.APPROVAL_DEADLINE_HOURS),
    )
    audit_log(
        action="approval.requested",
        actor=Actor.for_employee(task.employee),
        subject=approval,
        data={"task": task.pk, "tool": tool_name, "arguments": arguments, "call_id": call_id},
    )
    _enqueue_notification(approval)
    return approval


def budget_raise_request_create(*, task: Task, refusal) -> ApprovalRequest:
    """Ask a person to raise the budget that stopped a model call."""
    current, needed = Decimal(refusal.current), Decimal(refusal.needed)
    # Enough for this call and then some, so one approval is not at once followed by another.
    step = Decimal("1") if refusal.scope == "turn" else Decimal("0.01")
    requested = max(needed, current * 2).quantize(step)
    # The whole request's ceiling belongs to whoever asked for the request: its team decides
    # (in its inbox), though the delegated task that hit the ceiling is the one that resumes.
    decides = (
        Task.objects.select_related("employee").get(pk=task.root_id).employee
        if refusal.scope == "request" and task.root_id
        else task.employee
    )
    approval = ApprovalRequest.objects.create(
        task=task,
        employee=decides,
        kind=ApprovalKind.BUDGET_RAISE,
        arguments={"scope": refusal.scope, "current": str(current), "requested": str(requested)},
        reason=refusal.message,
        risk=Risk.MEDIUM,
        deadline=timezone.now() + timedelta(hours=settings.APPROVAL_DEADLINE_HOURS),
    )
    audit_log(
        action="approval.requested",
        actor=Actor.for_employee(task.employee),
        subject=approval,
        data={"task": task.pk, "budget": approval.arguments},
    )
    _enqueue_notification(approval)
    return approval


@transaction.atomic
def approval_decide(
    *,
    approval: ApprovalRequest,
    user,
    decision: str,
    comment: str = "",
    edited_arguments: dict | None = None,
    client_address: str = "",
) -> ApprovalRequest:
    """Approve (optionally with edited arguments) or reject; exactly one decision wins."""
    if decision not in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
        raise ValueError("decision must be 'approved' or 'rejected'")
    if decision == ApprovalStatus.REJECTED and not comment.strip():
        raise ValidationError("Say why you reject this, so the employee can learn from it.")
    if edited_arguments is not None:
        if approval.kind != ApprovalKind.TOOL_CALL or decision != ApprovalStatus.APPROVED:
            raise ValidationError("Only an action being approved can be edited.")
        validate_storable(edited_arguments, what="The edited arguments")
        tool = get_tool(approval.tool_name)
        problem = validate_arguments(tool, edited_arguments)
        if problem:
            raise ValidationError(
                f"The edited arguments do not fit {approval.tool_name}: {problem}"
            )
        _check_edit_within_grant(approval, tool, edited_arguments)
    now = timezone.now()
    # Past its deadline a request can no longer be decided, even before the expiry job runs.
    open_request = Q(deadline__isnull=True) | Q(deadline__gt=now)
    won = ApprovalRequest.objects.filter(
        open_request, pk=approval.pk, status=ApprovalStatus.PENDING
    ).update(
        status=decision,
        decided_by=user,
        decided_at=now,
        decision_comment=comment.strip(),
        approved_arguments=edited_arguments,
    )
    approval.refresh_from_db()
    if not won and approval.status == ApprovalStatus.PENDING:
        raise DecisionConflict("Its deadline has passed; it expires without being executed.")
    if not won:
        who = approval.decided_by.get_username() if approval.decided_by else "the system"
        when = f" at {approval.decided_at:%Y-%m-%d %H:%M:%S}" if approval.decided_at else ""
        raise DecisionConflict(f"Already {approval.get_status_display().lower()} by {who}{when}.")
    audit_log(
        action=f"approval.{decision}",
        actor=Actor.for_user(user),
        subject=approval,
        data={
            "task": approval.task_id,
            "comment": comment.strip(),
            "arguments_before": approval.arguments,
            "arguments_after": edited_arguments
            if edited_arguments is not None
            else approval.arguments,
            "client_address": client_address,
        },
    )
    lesson = _approval_lesson(approval)
    if lesson:
        lesson_record(
            employee=approval.employee,
            text=lesson,
            source=f"approval #{approval.pk}",
            user=user,
            details=_approval_lesson_details(approval),
            task=approval.task,
        )
    task = approval.task
    if approval.kind == ApprovalKind.BUDGET_RAISE and decision == ApprovalStatus.APPROVED:
        _apply_budget_raise(approval)
    if approval.kind == ApprovalKind.BUDGET_RAISE and decision == ApprovalStatus.REJECTED:
        from tasks.services import task_cancel

        task_cancel(
            task=task, actor=Actor.for_user(user), reason=f"Budget raise rejected: {comment}"
        )
        return approval
    from tasks.services import task_resume

    task_resume(
        task=task,
        from_statuses={TaskStatus.WAITING_APPROVAL, TaskStatus.BUDGET_EXHAUSTED},
        actor=Actor.for_user(user),
        reason=f"approval #{approval.pk} {decision}",
    )
    return approval


def _check_edit_within_grant(approval: ApprovalRequest, tool, edited: dict) -> None:
    """An edit may change an action, never widen what the employee is allowed to do."""
    from employees.models import ToolGrant

    grant = ToolGrant.objects.filter(employee=approval.employee_id, tool_name=tool.name).first()
    if grant is None:
        raise ValidationError(f"{approval.employee.name} no longer has {tool.name}.")
    refusal = tool.check_scope(edited, grant.scope) if tool.check_scope else None
    if refusal:
        raise ValidationError(
            f"The edited action is outside what {approval.employee.name} may do: {refusal}"
        )


def _apply_budget_raise(approval: ApprovalRequest) -> None:
    scope, requested = approval.arguments["scope"], approval.arguments["requested"]
    task = approval.task
    if scope == "task":
        task.budget_overrides = {**task.budget_overrides, "task_cost": requested}
        task.save(update_fields=["budget_overrides"])
    elif scope == "request":  # the root of a delegated task's tree: its ceiling covers them all
        root = Task.objects.get(pk=task.root_id)
        root.budget_overrides = {**root.budget_overrides, "task_cost": requested}
        root.save(update_fields=["budget_overrides"])
    elif scope == "turn":
        task.budget_overrides = {**task.budget_overrides, "turn_tokens": int(Decimal(requested))}
        task.save(update_fields=["budget_overrides"])
    else:
        day = timezone.localdate(timezone=task.employee.tzinfo)
        DailySpend.objects.update_or_create(
            employee=task.employee, day=day, defaults={"limit_override": Decimal(requested)}
        )


def escalation_create(
    *, task: Task, summary: str, evidence: list, options: list, recommendation: str
) -> Escalation:
    """Hand a decision the employee cannot make to a person."""
    escalation = Escalation.objects.create(
        task=task,
        employee=task.employee,
        summary=summary,
        evidence=evidence,
        options=options,
        recommendation=recommendation,
    )
    audit_log(
        action="escalation.opened",
        actor=Actor.for_employee(task.employee),
        subject=escalation,
        data={"task": task.pk, "summary": summary, "options": options},
    )
    return escalation


@transaction.atomic
def escalation_answer(
    *,
    escalation: Escalation,
    user,
    answer: str = "",
    chosen_option: str = "",
    take_over: bool = False,
) -> Escalation:
    """Answer an escalation (pick an option, write an answer, or take the task over)."""
    if chosen_option and chosen_option not in escalation.options:
        raise ValidationError(f"'{chosen_option}' is not one of the options offered.")
    if not (answer.strip() or chosen_option or take_over):
        raise ValidationError("Pick an option, write an answer, or take the task over.")
    status = EscalationStatus.TAKEN_OVER if take_over else EscalationStatus.ANSWERED
    won = Escalation.objects.filter(pk=escalation.pk, status=EscalationStatus.OPEN).update(
        status=status,
        answer=answer.strip(),
        chosen_option=chosen_option,
        answered_by=user,
        answered_at=timezone.now(),
    )
    escalation.refresh_from_db()
    if not won:
        who = escalation.answered_by.get_username() if escalation.answered_by else "someone"
        raise DecisionConflict(f"Already answered by {who}.")
    audit_log(
        action="escalation.taken_over" if take_over else "escalation.answered",
        actor=Actor.for_user(user),
        subject=escalation,
        data={"task": escalation.task_id, "answer": answer.strip(), "option": chosen_option},
    )
    if escalation.answer or escalation.chosen_option:
        lesson_record(
            employee=escalation.employee,
            text=_escalation_lesson(escalation),
            source=f"escalation #{escalation.pk}",
            user=user,
            details={"decision": "answered", "option": chosen_option, "answer": answer.strip()},
            task=escalation.task,
        )
    from tasks.services import task_cancel, task_resume

    if take_over:
        task_cancel(
            task=escalation.task, actor=Actor.for_user(user), reason="Taken over by a person."
        )
    else:
        task_resume(
            task=escalation.task,
            from_statuses={TaskStatus.WAITING_ESCALATION},
            actor=Actor.for_user(user),
            reason=f"escalation #{escalation.pk} answered",
        )
    return escalation


# --- deadlines ----------------------------------------------------------------------------------


def approvals_expire_due(*, now: datetime | None = None) -> int:
    """Expire pending requests whose deadline passed, and resume (or stop) their tasks."""
    now = now or timezone.now()
    due = ApprovalRequest.objects.filter(
        status=ApprovalStatus.PENDING, deadline__lte=now
    ).values_list("pk", flat=True)
    return sum(_approval_expire(approval_id=pk, now=now) for pk in list(due))


@transaction.atomic
def _approval_expire(*, approval_id: int, now: datetime) -> bool:
    won = ApprovalRequest.objects.filter(
        pk=approval_id, status=ApprovalStatus.PENDING, deadline__lte=now
    ).update(status=ApprovalStatus.EXPIRED, decided_at=now)
    if not won:
        return False  # decided (or expired by another pass) meanwhile
    approval = ApprovalRequest.objects.select_related("task").get(pk=approval_id)
    actor = Actor.system("deadline")
    audit_log(
        action="approval.expired",
        actor=actor,
        subject=approval,
        data={"task": approval.task_id, "deadline": approval.deadline},
    )
    from tasks.services import task_cancel, task_resume

    if approval.kind == ApprovalKind.BUDGET_RAISE:
        task_cancel(
            task=approval.task,
            actor=actor,
            reason="Nobody decided on the budget raise before its deadline.",
        )
    else:
        # The loop records the action as not executed and escalates it (see tasks.loop).
        task_resume(
            task=approval.task,
            from_statuses={TaskStatus.WAITING_APPROVAL, TaskStatus.BUDGET_EXHAUSTED},
            actor=actor,
            reason=f"approval #{approval.pk} expired",
        )
    return True


# --- lessons from people's feedback -------------------------------------------------------------


def lesson_record(
    *, employee: Employee, text: str, source: str, user, details: dict | None = None, task=None
) -> MemoryEntry:
    """Remember a person's feedback as a lesson the employee applies from its next task on."""
    from employees.memory.services import memory_remember

    return memory_remember(
        kind=MemoryKind.LESSON,
        employee=employee,
        text=text[:2000],
        source=source,
        details=details,
        source_task=task,
        user=user,
        actor=Actor.for_user(user),
    )


def _quote(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    if len(text) > _QUOTED_CHARS:
        text = text[: _QUOTED_CHARS - 1] + "…"
    return f"'{text}'"


def arguments_change_summary(before: dict, after: dict) -> str:
    """What a person changed in a proposal, e.g. "subject: 'A' → 'B'"."""
    changes = []
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key not in after:
            changes.append(f"{key}: removed {_quote(old)}")
        elif key not in before:
            changes.append(f"{key}: added {_quote(new)}")
        else:
            changes.append(f"{key}: {_quote(old)} → {_quote(new)}")
    return "; ".join(changes)


def _on_task(approval: ApprovalRequest) -> str:
    # The title says what the work was about, so a similar task later recalls the lesson.
    title = approval.task.title if approval.task_id else ""
    return f"On the task {_quote(title)}, a person" if title else "A person"


def _approval_lesson(approval: ApprovalRequest) -> str:
    what = (
        f"your {approval.tool_name} action"
        if approval.kind == ApprovalKind.TOOL_CALL
        else "your budget raise"
    )
    comment = approval.decision_comment
    if approval.status == ApprovalStatus.REJECTED:
        return f"{_on_task(approval)} rejected {what}. Reason: {comment}"
    if approval.approved_arguments is None:
        return ""
    changes = arguments_change_summary(approval.arguments, approval.approved_arguments)
    if not changes:
        return ""
    lesson = f"{_on_task(approval)} approved {what} only after changing it: {changes}."
    return f"{lesson} Comment: {comment}" if comment else lesson


def _approval_lesson_details(approval: ApprovalRequest) -> dict:
    """What the offline engine needs to apply the lesson: the tool, the decision, the edits."""
    details = {"tool": approval.tool_name, "reason": approval.decision_comment}
    if approval.status == ApprovalStatus.REJECTED:
        return {**details, "decision": "rejected"}
    before, after = approval.arguments or {}, approval.approved_arguments or {}
    changes = {
        key: {"from": before.get(key), "to": after.get(key)}
        for key in {*before, *after}
        if before.get(key) != after.get(key)
    }
    return {**details, "decision": "edited", "changes": changes}


def _escalation_lesson(escalation: Escalation) -> str:
    parts = [f"When you escalated {_quote(escalation.summary)}, a person"]
    if escalation.chosen_option:
        parts.append(f"chose {_quote(escalation.chosen_option)}")
    if escalation.answer:
        parts.append(
            ("and " if escalation.chosen_option else "") + f"answered: {escalation.answer}"
        )
    return " ".join(parts)


def notification_preference_set(*, user, mode: str) -> None:
    """How a person wants to hear about new requests: immediately, in a digest, or not at all."""
    from approvals.models import NotificationMode, NotificationPreference

    if mode not in NotificationMode.values:
        raise ValidationError(f"Choose one of: {', '.join(NotificationMode.labels)}.")
    NotificationPreference.objects.update_or_create(user=user, defaults={"mode": mode})
    audit_log(
        action="notifications.preference_changed",
        actor=Actor.for_user(user),
        subject=user,
        data={"mode": mode},
    )
