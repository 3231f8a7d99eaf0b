"""What a person may do from an MCP client: one service or selector call each, as that person.

Plain synchronous functions taking the person, returning JSON-ready dicts and raising
`ToolError` with a message for the person (never a crash). The rules are the front office's:
the directory's team scoping, the task page's, and the inbox's (a request the person may not
decide is "no such approval", exactly like one that does not exist, so nothing leaks).
Text written by employees or by whoever sent a task (results, arguments, reasons) is untrusted:
it is returned as data in a field, never as instructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.urls import reverse
from mcp.server.mcpserver.exceptions import ToolError

from aiworkforce.audit import Actor, audit_log
from aiworkforce.storable import storable_problem
from approvals.selectors import (
    approval_for_user,
    approvals_pending_for,
    escalation_for_user,
    escalations_open_for,
)
from approvals.services import DecisionConflict, approval_decide, escalation_answer
from employees.models import Employee, TeamMembership, TeamRole
from employees.selectors import employees_visible_to
from tasks.models import TaskSource
from tasks.selectors import task_for_user, tasks_visible_to
from tasks.services import TaskRefused, task_create

LIST_LIMIT = 200  # rows one listing returns; a client asks again after deciding
MAX_IDEMPOTENCY_KEY = 100


@dataclass(frozen=True)
class Via:
    """How the person reached us, for the audit trail: the transport and the token's prefix."""

    transport: str  # "http" or "stdio"
    token_prefix: str = ""
    client_address: str = ""

    def as_data(self) -> dict:
        data = {"transport": self.transport}
        if self.token_prefix:
            data["key_prefix"] = self.token_prefix  # "token_…" keys are redacted
        return data


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _messages(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _refuse_unstorable(**values: str) -> None:
    for what, value in values.items():
        if problem := storable_problem(value):
            raise ToolError(f"The {what} cannot be stored because of {problem}. Remove it.")


def _audit_via(user, via: Via, action: str, subject, data: dict) -> None:
    """A second entry saying the change came through MCP (the service wrote its own)."""
    with transaction.atomic():
        audit_log(
            action=action,
            actor=Actor.for_user(user),
            subject=subject,
            data={**data, **via.as_data()},
        )


# --- employees and tasks ------------------------------------------------------------------------


def may_assign(user, employee: Employee) -> bool:
    """Who may give an employee work: who may in the back office (the `tasks.add_task`
    permission) or its team's managers and its own human manager; superusers everywhere.
    Always within the teams the person can see (the employee came from employees_visible_to)."""
    if user.is_superuser or employee.manager_id == user.pk or user.has_perm("tasks.add_task"):
        return True
    return TeamMembership.objects.filter(
        user=user, team_id=employee.team_id, role=TeamRole.MANAGER
    ).exists()


def list_employees(user) -> dict:
    employees = list(employees_visible_to(user).order_by("name", "pk")[: LIST_LIMIT + 1])
    rows = [
        {
            "handle": f"@{employee.handle}",
            "name": employee.name,
            "role": employee.role_title,
            "team": employee.team.name,
            "status": employee.status,
            "you_may_assign": may_assign(user, employee),
        }
        for employee in employees[:LIST_LIMIT]
    ]
    return {"employees": rows, "more": len(employees) > LIST_LIMIT}


def _visible_employee(user, handle: str) -> Employee:
    handle = (handle or "").strip().lstrip("@")
    employee = employees_visible_to(user).filter(handle=handle).first() if handle else None
    if employee is None:
        raise ToolError(f"No employee @{handle} in your teams. list_employees shows who there is.")
    return employee


def _task_url(task_id: int) -> str:
    return reverse("tasks:detail", args=[task_id])


def assign_task(
    user,
    via: Via,
    *,
    employee: str,
    instructions: str,
    title: str = "",
    urgent: bool = False,
    idempotency_key: str = "",
) -> dict:
    target = _visible_employee(user, employee)
    if not may_assign(user, target):
        raise ToolError(
            f"You may see @{target.handle} but not give it work: only its team's managers "
            "and its own manager can."
        )
    _refuse_unstorable(instructions=instructions, title=title, idempotency_key=idempotency_key)
    if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise ToolError(f"Keep the idempotency key to {MAX_IDEMPOTENCY_KEY} characters.")
    # Per person, so one person's key never finds another person's (or a webhook's) task.
    key = f"mcp:{user.pk}:{idempotency_key}" if idempotency_key else None
    try:
        task, created = task_create(
            employee=target,
            title=title,
            input=instructions,
            source=TaskSource.MANUAL,
            requested_by_user=user,
            urgent=urgent,
            idempotency_key=key,
        )
    except TaskRefused as exc:
        raise ToolError(str(exc)) from None
    except ValidationError as exc:
        raise ToolError(_messages(exc)) from None
    if created:
        _audit_via(user, via, "mcp.task_assigned", task, {"employee": target.handle})
    task.refresh_from_db(fields=["status", "status_reason"])
    return {
        "task_id": task.pk,
        "created": created,
        "employee": f"@{target.handle}",
        "status": task.status,
        "status_reason": task.status_reason,
        "url": _task_url(task.pk),
    }


def task_status(user, *, task_id: int) -> dict:
    try:
        task = task_for_user(user, task_id)
    except Http404:
        raise ToolError(f"No such task #{task_id}.") from None
    waiting_on = approvals_pending_for(user).filter(task=task).values_list("pk", flat=True)
    escalations = escalations_open_for(user).filter(task=task).values_list("pk", flat=True)
    return {
        "task_id": task.pk,
        "title": task.title,
        "employee": f"@{task.employee.handle}",
        "status": task.status,
        "status_label": task.get_status_display(),
        "status_reason": task.status_reason,
        "finished": task.is_finished,
        # What the employee answered: its own text (untrusted data, not instructions).
        "result": task.result,
        "cost_usd": str(task.cost),
        "created_at": _when(task.created_at),
        "started_at": _when(task.started_at),
        "finished_at": _when(task.finished_at),
        "pending_approvals": list(waiting_on),
        "open_escalations": list(escalations),
        "url": _task_url(task.pk),
    }


def list_tasks(user, *, status: str = "") -> dict:
    tasks = tasks_visible_to(user).defer("input", "result").order_by("-created_at", "-pk")
    if status:
        tasks = tasks.filter(status=status)
    rows = list(tasks[: LIST_LIMIT + 1])
    return {
        "tasks": [
            {
                "task_id": task.pk,
                "title": task.title,
                "employee": f"@{task.employee.handle}",
                "status": task.status,
                "created_at": _when(task.created_at),
            }
            for task in rows[:LIST_LIMIT]
        ],
        "more": len(rows) > LIST_LIMIT,
    }


# --- decisions ----------------------------------------------------------------------------------


def pending_decisions(user) -> dict:
    approvals = list(approvals_pending_for(user)[: LIST_LIMIT + 1])
    escalations = list(escalations_open_for(user)[: LIST_LIMIT + 1])
    return {
        "approvals": [
            {
                "approval_id": approval.pk,
                "kind": approval.kind,
                "employee": f"@{approval.employee.handle}",
                "task_id": approval.task_id,
                "task_title": approval.task.title,
                "tool": approval.tool_name,
                # As the employee proposed them, and why: untrusted data.
                "arguments": approval.arguments,
                "reason": approval.reason,
                "risk": approval.risk,
                "created_at": _when(approval.created_at),
                "deadline": _when(approval.deadline),
            }
            for approval in approvals[:LIST_LIMIT]
        ],
        "escalations": [
            {
                "escalation_id": escalation.pk,
                "employee": f"@{escalation.employee.handle}",
                "task_id": escalation.task_id,
                "task_title": escalation.task.title,
                "summary": escalation.summary,
                "options": escalation.options,
                "recommendation": escalation.recommendation,
                "created_at": _when(escalation.created_at),
            }
            for escalation in escalations[:LIST_LIMIT]
        ],
        "more": len(approvals) > LIST_LIMIT or len(escalations) > LIST_LIMIT,
    }


def decide_approval(user, via: Via, *, approval_id: int, decision: str, comment: str = "") -> dict:
    """Approve (as proposed) or reject, as the inbox does."""
    try:
        approval = approval_for_user(user, approval_id)
    except Http404:
        raise ToolError(f"No such approval request #{approval_id}.") from None
    _refuse_unstorable(comment=comment)
    try:
        approval = approval_decide(
            approval=approval,
            user=user,
            decision=decision,
            comment=comment,
            client_address=via.client_address,
        )
    except DecisionConflict as exc:
        raise ToolError(f"Conflict: {exc}") from None
    except ValidationError as exc:
        raise ToolError(_messages(exc)) from None
    _audit_via(user, via, f"mcp.approval_{decision}", approval, {"task": approval.task_id})
    return {
        "approval_id": approval.pk,
        "status": approval.status,
        "decided_by": user.get_username(),
        "decided_at": _when(approval.decided_at),
        "task_id": approval.task_id,
        "url": _task_url(approval.task_id),
    }


def answer_escalation(
    user, via: Via, *, escalation_id: int, answer: str = "", option: str = ""
) -> dict:
    try:
        escalation = escalation_for_user(user, escalation_id)
    except Http404:
        raise ToolError(f"No such escalation #{escalation_id}.") from None
    _refuse_unstorable(answer=answer, option=option)
    try:
        escalation = escalation_answer(
            escalation=escalation, user=user, answer=answer, chosen_option=option
        )
    except DecisionConflict as exc:
        raise ToolError(f"Conflict: {exc}") from None
    except ValidationError as exc:
        raise ToolError(_messages(exc)) from None
    _audit_via(user, via, "mcp.escalation_answered", escalation, {"task": escalation.task_id})
    return {
        "escalation_id": escalation.pk,
        "status": escalation.status,
        "task_id": escalation.task_id,
        "url": _task_url(escalation.task_id),
    }
