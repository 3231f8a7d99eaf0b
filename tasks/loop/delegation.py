"""The loop's side of delegation: a `delegate` call creates a child task and waits for it.

The wait is durable like an approval wait: a DELEGATION step records which child answers
which call; when the task resumes, the loop rebuilds its transcript and asks here whether that
child has reported. Until every call of a model answer has its result, no model call is made.
"""

from __future__ import annotations

from typing import NoReturn

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from approvals.services import escalation_create
from employees.models import ToolGrant, ToolPolicy
from tasks import services
from tasks.context import Transcript, delegation_outcome, waiting_reason
from tasks.loop.state import Parked, Turn
from tasks.loop.waits import answered_escalation, ask_for_approval, maybe_break_loop
from tasks.models import Step, StepKind, Task, TaskStatus
from tasks.services import TaskRefused


def report_to_parent(task: Task, outcome: str | None) -> None:
    """A delegated task that finished, failed or escalated wakes the task that waits for it."""
    if task.parent_id and outcome in services.REPORTABLE:
        services.parent_wake(child_id=task.pk)


def delegate(
    turn: Turn, call_id: str, tool, grant: ToolGrant, arguments: dict, transcript: Transcript
) -> None:
    """Refuse a delegation outside the lines before anyone is asked to approve it."""
    check = services.delegation_check(
        task=turn.task, to=arguments["to"], call_id=call_id, scope=grant.scope
    )
    if check.refusal:
        _refuse(turn, call_id, tool, arguments, check.refusal)
        return
    if grant.policy == ToolPolicy.NEEDS_APPROVAL and check.existing is None:
        ask_for_approval(turn, call_id, tool, arguments, transcript)
    start_delegation(turn, call_id, tool, grant, arguments, check=check)


def _refuse(turn: Turn, call_id: str, tool, arguments: dict, why: str) -> None:
    turn.record_result(
        call_id,
        tool.name,
        arguments,
        "refused",
        {"error": why},
        audit=("tool.refused", {"tool": tool.name, "reason": why}),
    )
    maybe_break_loop(turn)


def start_delegation(
    turn: Turn,
    call_id: str,
    tool,
    grant: ToolGrant,
    arguments: dict,
    check: services.Check | None = None,
) -> None:
    """Create the child task and record the wait for it, in one transaction."""
    if check is None:  # after an approval: the lines may have changed meanwhile
        check = services.delegation_check(
            task=turn.task, to=arguments["to"], call_id=call_id, scope=grant.scope
        )
        if check.refusal:
            _refuse(turn, call_id, tool, arguments, check.refusal)
            return
    try:
        with transaction.atomic():
            # The task row stays locked: a cancel or pause waits for the child to exist.
            if not turn.lock_while_acting():
                transaction.set_rollback(True)
                raise Parked
            child = check.existing or services.delegation_create(
                parent=turn.task, call_id=call_id, target=check.target, arguments=arguments
            )
            turn.record(
                StepKind.DELEGATION,
                {
                    "call_id": call_id,
                    "name": tool.name,
                    "arguments": arguments,
                    "delegated_task": child.pk,
                    "to": check.target.handle,
                    "expected_by": child.expected_by,
                },
                after=[
                    turn.audit("task.delegated", {"child": child.pk, "to": check.target.handle})
                ],
            )
    except Parked:
        turn.stop()
    except (TaskRefused, ValidationError) as exc:
        # E.g. the colleague was offboarded since the check: the caller hears why and adapts.
        message = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
        _refuse(turn, call_id, tool, arguments, f"The delegation was refused: {message}")
        return
    turn.awaiting[child.pk] = check.target.handle


def wait_for_children(turn: Turn) -> NoReturn:
    """Park without holding a worker until a delegated task has something to report."""
    turn.flush()  # a held tool result is written before the task parks
    reason = waiting_reason(turn.awaiting)
    if services.task_release(
        task=turn.task, status=TaskStatus.WAITING_CHILDREN, reason=reason, worker=turn.worker
    ):
        turn.outcome = TaskStatus.WAITING_CHILDREN
        # A child that reported between our look and our parking found us still running.
        services.parent_wake_if_ready(parent=turn.task, awaiting=list(turn.awaiting))
    raise Parked


def resume_delegation(turn: Turn, wait: Step, call_id: str, name: str) -> None:
    """Turn a delegated task's outcome into the call's result, or keep waiting for it."""
    child = Task.objects.select_related("employee").get(pk=wait.payload["delegated_task"])
    arguments = wait.payload.get("arguments", {})
    outcome = delegation_outcome(child)
    if wait.kind == StepKind.ESCALATION:  # a person was asked about an overdue wait
        escalation = answered_escalation(turn, wait)
        if outcome is None and escalation.chosen_option != services.KEEP_WAITING:
            services.delegation_release(child=child)
            answer = escalation.answer or escalation.chosen_option
            turn.record_result(
                call_id,
                name,
                arguments,
                "error",
                {
                    "delegated_task": child.pk,
                    "employee": f"@{child.employee.handle}",
                    "status": child.status,
                    "error": f"Not waited for: task #{child.pk} for @{child.employee.handle} was "
                    f"late and a person answered: {answer}",
                },
            )
            return
        if outcome is None:
            expected_by = services.delegation_extend(
                child=child, hours=arguments.get("deadline_hours")
            )
            turn.record(
                StepKind.DELEGATION,
                {**wait.payload, "extended": True, "expected_by": expected_by},
            )
            turn.awaiting[child.pk] = child.employee.handle
            return
    if outcome is None:
        if child.expected_by is not None and child.expected_by <= timezone.now():
            _escalate_overdue(turn, call_id, child, arguments)
        turn.awaiting[child.pk] = child.employee.handle
        return
    status, result = outcome
    if not child.is_finished:
        services.delegation_release(child=child)  # reported: its deadline no longer applies
    turn.record_result(call_id, name, arguments, status, result)


def _escalate_overdue(turn: Turn, call_id: str, child: Task, arguments: dict) -> NoReturn:
    """A delegated task is past its deadline: ask a person whether to keep waiting."""
    handle = child.employee.handle
    summary = f"@{handle} has not finished delegated task #{child.pk} by its deadline."

    def ask() -> None:
        escalation = escalation_create(
            task=turn.task,
            summary=summary,
            evidence=[
                f"Task #{child.pk} for @{handle} is {child.get_status_display().lower()}"
                + (f": {child.status_reason}" if child.status_reason else ""),
                f"Expected by {child.expected_by:%Y-%m-%d %H:%M %Z}.",
            ],
            options=[services.KEEP_WAITING, services.CONTINUE_WITHOUT],
            recommendation=services.KEEP_WAITING,
        )
        turn.record(
            StepKind.ESCALATION,
            {
                "call_id": call_id,
                "escalation_id": escalation.pk,
                "summary": summary,
                "delegated_task": child.pk,
                "arguments": arguments,
            },
        )

    turn.park_with(TaskStatus.WAITING_ESCALATION, f"Escalated: {summary}", ask)
