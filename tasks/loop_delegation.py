"""The loop's side of delegation: a `delegate` call creates a child task and waits for it.

Kept beside tasks.loop (which calls in at a few points) so the loop itself stays small. The
wait is durable like an approval wait: a DELEGATION step records which child answers which
call; when the task resumes, the loop rebuilds its transcript and asks here whether that child
has reported. Until every call of a model answer has its result, no model call is made.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from employees.models import ToolGrant, ToolPolicy
from tasks import delegation, loop, services
from tasks.models import Step, StepKind, Task, TaskStatus
from tasks.services import TaskRefused


def report_to_parent(task: Task, outcome: str | None) -> None:
    """A delegated task that finished, failed or escalated wakes the task that waits for it."""
    if task.parent_id and outcome in delegation.REPORTABLE:
        delegation.parent_wake(child_id=task.pk)


def delegate(state, call_id: str, tool, grant: ToolGrant, arguments: dict, transcript) -> None:
    """Refuse a delegation outside the lines before anyone is asked to approve it."""
    check = delegation.delegation_check(
        task=state.task, to=arguments["to"], call_id=call_id, scope=grant.scope
    )
    if check.refusal:
        _refuse(state, call_id, tool, arguments, check.refusal)
        return
    if grant.policy == ToolPolicy.NEEDS_APPROVAL and check.existing is None:
        loop._ask_for_approval(state, call_id, tool, arguments, transcript)
    start(state, call_id, tool, grant, arguments, check=check)


def _refuse(state, call_id: str, tool, arguments: dict, why: str) -> None:
    loop._result(
        state,
        call_id,
        tool.name,
        arguments,
        "refused",
        {"error": why},
        audit=("tool.refused", {"tool": tool.name, "reason": why}),
    )
    loop._maybe_break_loop(state)


def start(
    state,
    call_id: str,
    tool,
    grant: ToolGrant,
    arguments: dict,
    check: delegation.Check | None = None,
) -> None:
    """Create the child task and record the wait for it, in one transaction."""
    if check is None:  # after an approval: the lines may have changed meanwhile
        check = delegation.delegation_check(
            task=state.task, to=arguments["to"], call_id=call_id, scope=grant.scope
        )
        if check.refusal:
            _refuse(state, call_id, tool, arguments, check.refusal)
            return
    try:
        with transaction.atomic():
            # The task row stays locked: a cancel or pause waits for the child to exist.
            if not loop._lock_while_acting(state):
                transaction.set_rollback(True)
                raise loop.Parked
            child = check.existing or delegation.delegation_create(
                parent=state.task, call_id=call_id, target=check.target, arguments=arguments
            )
            loop._record(
                state,
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
                    loop._audit_part(
                        state, "task.delegated", {"child": child.pk, "to": check.target.handle}
                    )
                ],
            )
    except loop.Parked:
        loop._stop(state)
    except (TaskRefused, ValidationError) as exc:
        # E.g. the colleague was offboarded since the check: the caller hears why and adapts.
        message = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
        _refuse(state, call_id, tool, arguments, f"The delegation was refused: {message}")
        return
    state.awaiting[child.pk] = check.target.handle


def wait_for_children(state) -> None:
    """Park without holding a worker until a delegated task has something to report."""
    loop._flush(state)  # a held tool result is written before the task parks
    reason = delegation.waiting_reason(state.awaiting)
    if services.task_release(
        task=state.task, status=TaskStatus.WAITING_CHILDREN, reason=reason, worker=state.worker
    ):
        state.outcome = TaskStatus.WAITING_CHILDREN
        # A child that reported between our look and our parking found us still running.
        delegation.parent_wake_if_ready(parent=state.task, awaiting=list(state.awaiting))
    raise loop.Parked


def resume(state, wait: Step, call_id: str, name: str) -> None:
    """Turn a delegated task's outcome into the call's result, or keep waiting for it."""
    from approvals.models import Escalation, EscalationStatus

    child = Task.objects.select_related("employee").get(pk=wait.payload["delegated_task"])
    arguments = wait.payload.get("arguments", {})
    outcome = delegation.delegation_outcome(child)
    if wait.kind == StepKind.ESCALATION:  # a person was asked about an overdue wait
        escalation = Escalation.objects.get(pk=wait.payload["escalation_id"])
        if escalation.status == EscalationStatus.OPEN:
            loop._park(
                state, TaskStatus.WAITING_ESCALATION, "Waiting for an answer to its escalation."
            )
        if outcome is None and escalation.chosen_option != delegation.KEEP_WAITING:
            delegation.delegation_release(child=child)
            answer = escalation.answer or escalation.chosen_option
            loop._result(
                state,
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
            expected_by = delegation.delegation_extend(
                child=child, hours=arguments.get("deadline_hours")
            )
            loop._record(
                state,
                StepKind.DELEGATION,
                {**wait.payload, "extended": True, "expected_by": expected_by},
            )
            state.awaiting[child.pk] = child.employee.handle
            return
    if outcome is None:
        if child.expected_by is not None and child.expected_by <= timezone.now():
            _escalate_overdue(state, call_id, child, arguments)
        state.awaiting[child.pk] = child.employee.handle
        return
    status, result = outcome
    if not child.is_finished:
        delegation.delegation_release(child=child)  # reported: its deadline no longer applies
    loop._result(state, call_id, name, arguments, status, result)


def _escalate_overdue(state, call_id: str, child: Task, arguments: dict) -> None:
    """A delegated task is past its deadline: ask a person whether to keep waiting."""
    from approvals.services import escalation_create

    handle = child.employee.handle
    summary = f"@{handle} has not finished delegated task #{child.pk} by its deadline."

    def ask() -> None:
        escalation = escalation_create(
            task=state.task,
            summary=summary,
            evidence=[
                f"Task #{child.pk} for @{handle} is {child.get_status_display().lower()}"
                + (f": {child.status_reason}" if child.status_reason else ""),
                f"Expected by {child.expected_by:%Y-%m-%d %H:%M %Z}.",
            ],
            options=[delegation.KEEP_WAITING, delegation.CONTINUE_WITHOUT],
            recommendation=delegation.KEEP_WAITING,
        )
        loop._record(
            state,
            StepKind.ESCALATION,
            {
                "call_id": call_id,
                "escalation_id": escalation.pk,
                "summary": summary,
                "delegated_task": child.pk,
                "arguments": arguments,
            },
        )

    loop._park_with(state, TaskStatus.WAITING_ESCALATION, f"Escalated: {summary}", ask)
