"""The model's tool calls: refuse, propose (shadow mode), ask first, or execute exactly once.

A call is checked (granted, valid JSON, schema, the grant's scope, the loop breaker) before
anything is sent anywhere. What cannot be undone records its intent first, so a call whose
worker died is answered "unknown" and never repeated.
"""

from __future__ import annotations

import json
import logging

from django.db import transaction

from approvals.models import ApprovalRequest, ApprovalStatus
from employees.models import ToolGrant, ToolPolicy
from tasks.context import Transcript
from tasks.loop.delegation import delegate, resume_delegation, start_delegation
from tasks.loop.state import Parked, Turn
from tasks.loop.waits import (
    ask_for_approval,
    check_repeats,
    escalate_call,
    escalate_expired,
    maybe_break_loop,
    resume_escalated_call,
)
from tasks.models import Step, StepKind, TaskStatus
from tasks.tools import ToolContext, UnknownToolError, get_tool, validate_arguments

logger = logging.getLogger(__name__)

UNKNOWN_OUTCOME = (
    "The outcome of this call is unknown (the worker stopped while it ran); it was not repeated."
)


def tool_or_none(name: str):
    try:
        return get_tool(name)
    except UnknownToolError:
        return None


def handle_call(turn: Turn, transcript: Transcript, call: dict) -> None:
    """Give one pending call of the model's answer its result (or park until it has one)."""
    call_id = call["id"]
    name = turn.model_names.get(call["function"]["name"], call["function"]["name"])
    raw_arguments = call["function"].get("arguments") or "{}"
    if call_id in transcript.waits:
        wait = transcript.waits[call_id]
        # The name recorded with the wait: the grant (and its alias) may be gone since.
        _resume_waiting_call(turn, wait, call_id, wait.payload.get("name") or name)
        return
    if call_id in transcript.intents:
        arguments = transcript.intents[call_id].payload.get("arguments")
        turn.record_result(call_id, name, arguments, "unknown", {"error": UNKNOWN_OUTCOME})
        return
    grant = turn.grants.get(name)
    tool = tool_or_none(name)
    if grant is None or tool is None:
        _refuse(
            turn,
            call_id,
            name,
            raw_arguments,
            f"Tool '{name}' is not available to you. Use only your granted tools.",
            audit_reason="not granted",
        )
        return
    try:
        arguments = json.loads(raw_arguments)
    except ValueError as exc:
        _invalid(
            turn,
            call_id,
            name,
            raw_arguments,
            f"The arguments are not valid JSON ({exc}). Send a JSON object.",
        )
        return
    problem = validate_arguments(tool, arguments)
    if problem is None and tool.check_scope:
        refusal = tool.check_scope(arguments, grant.scope)
        if refusal:
            _refuse(turn, call_id, name, arguments, f"Not allowed: {refusal}", audit_reason=refusal)
            return
    if problem:
        _invalid(turn, call_id, name, arguments, f"Invalid arguments: {problem}")
        return
    check_repeats(turn, transcript, name, arguments)
    if turn.proposes(tool, grant):
        _propose(turn, call_id, name, arguments)
        return
    if tool.delegates:
        delegate(turn, call_id, tool, grant, arguments, transcript)
        return
    if tool.parks_task:
        escalate_call(turn, call_id, arguments)
    if grant.policy == ToolPolicy.NEEDS_APPROVAL:
        ask_for_approval(turn, call_id, tool, arguments, transcript)
    _execute(turn, call_id, tool, grant, arguments)


def _refuse(turn: Turn, call_id: str, name: str, arguments, why: str, *, audit_reason: str):
    turn.record_result(
        call_id,
        name,
        arguments,
        "refused",
        {"error": why},
        audit=("tool.refused", {"tool": name, "reason": audit_reason}),
    )
    maybe_break_loop(turn)


def _invalid(turn: Turn, call_id: str, name: str, arguments, why: str) -> None:
    turn.record_result(call_id, name, arguments, "error", {"error": why})
    maybe_break_loop(turn)


def _propose(turn: Turn, call_id: str, name: str, arguments: dict) -> None:
    """Shadow mode: record what would have been done, do nothing."""
    turn.record_result(
        call_id,
        name,
        arguments,
        "proposed",
        {
            "summary": (
                "proposed only: this is an evaluation, nothing was executed"
                if turn.evaluating
                else "proposed only: the employee is in shadow mode, nothing was executed"
            ),
            "proposed_arguments": arguments,
        },
        audit=("tool.proposed", {"tool": name, "arguments": arguments}),
    )


def _execute(turn: Turn, call_id: str, tool, grant: ToolGrant, arguments: dict) -> None:
    """Run a granted, valid, approved call once; only while the task and employee may act."""
    turn.flush()  # no tool runs before the steps before it are committed
    if tool.delegates:
        start_delegation(turn, call_id, tool, grant, arguments)
        return
    context = ToolContext(
        task=turn.task, employee=turn.task.employee, call_id=call_id, scope=grant.scope, grant=grant
    )

    def record(result: dict, hold: bool = False) -> None:
        status = "error" if "error" in result else "ok"
        turn.record_result(
            call_id,
            tool.name,
            arguments,
            status,
            result,
            audit=("tool.executed", {"tool": tool.name, "arguments": arguments, "status": status}),
            hold=hold,
        )

    if not tool.transactional:
        # Not undoable: record the intent first (only while the employee may act), so a crash
        # mid-call is never retried blindly.
        turn.record_result(call_id, tool.name, arguments, "started", {}, guard="acting")
        # The outcome may ride with the next statement: a crash before that leaves the
        # call "unknown", as a crash during it would, and it is never repeated.
        record(_run_tool(tool, context, arguments), hold=True)
    elif tool.writes_database:
        # The tool's own writes (outbox row, follow-up task) commit with its step, or not at
        # all; the task row stays locked meanwhile, so a cancel or pause waits for us.
        try:
            with transaction.atomic():
                if not turn.lock_while_acting():
                    transaction.set_rollback(True)
                    raise Parked
                record(tool.execute(context, arguments))
        except Parked:
            turn.stop()
        except Exception as exc:
            logger.warning("tool %s failed: %s", tool.name, exc)
            record({"error": f"The tool failed: {type(exc).__name__}: {exc}"[:1000]})
    else:
        # Read-only: its result may ride with the next statement (running it again after a
        # crash before that is harmless).
        record(_run_tool(tool, context, arguments), hold=True)
    if turn.steps[-1].payload["status"] == "error":
        maybe_break_loop(turn)


def _run_tool(tool, context: ToolContext, arguments: dict) -> dict:
    try:
        return tool.execute(context, arguments)
    except Exception as exc:
        logger.warning("tool %s failed: %s", tool.name, exc)
        return {"error": f"The tool failed: {type(exc).__name__}: {exc}"[:1000]}


def _resume_waiting_call(turn: Turn, wait: Step, call_id: str, name: str) -> None:
    """A call that waited for a person (or a colleague): its answer, or keep waiting."""
    if wait.payload.get("delegated_task"):
        resume_delegation(turn, wait, call_id, name)
        return
    if wait.kind == StepKind.ESCALATION:
        resume_escalated_call(turn, wait, call_id, name)
        return
    approval = ApprovalRequest.objects.get(pk=wait.payload["approval_id"])
    if approval.status == ApprovalStatus.PENDING:
        turn.park(TaskStatus.WAITING_APPROVAL, f"Waiting for approval of {name}.")
    if approval.status == ApprovalStatus.EXPIRED:
        escalate_expired(turn, call_id, name, approval.arguments)
    if approval.status != ApprovalStatus.APPROVED:
        verb = "rejected" if approval.status == ApprovalStatus.REJECTED else "cancelled"
        comment = f" Reason: {approval.decision_comment}" if approval.decision_comment else ""
        turn.record_result(
            call_id,
            name,
            approval.arguments,
            "rejected",
            {"error": f"A person {verb} this action.{comment}"},
        )
        return
    arguments = (
        approval.approved_arguments
        if approval.approved_arguments is not None
        else approval.arguments
    )
    tool = tool_or_none(name)
    grant = turn.grants.get(name) if tool is not None else None
    # The approved (possibly edited) arguments are checked again against the schema and grant.
    problem = validate_arguments(tool, arguments) if grant else "the grant was revoked"
    refusal = (
        tool.check_scope(arguments, grant.scope)
        if grant and not problem and tool.check_scope
        else None
    )
    if problem or refusal:
        turn.record_result(
            call_id, name, arguments, "refused", {"error": f"Not executed: {problem or refusal}"}
        )
        return
    if turn.proposes(tool, grant):
        _propose(turn, call_id, name, arguments)  # put in shadow mode since it was approved
        return
    _execute(turn, call_id, tool, grant, arguments)
