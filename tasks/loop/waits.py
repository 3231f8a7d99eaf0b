"""Waiting for people: approvals, budget raises, escalations, and the loop breaker.

Each wait creates its request and parks the task in one transaction (Turn.park_with); when a
person decides, the task is resumed and the loop finds the answer here.
"""

from __future__ import annotations

import json
from typing import NoReturn

from django.conf import settings

from aiworkforce.audit import redact
from approvals.models import Escalation, EscalationStatus
from approvals.services import (
    approval_request_create,
    budget_raise_request_create,
    escalation_create,
)
from tasks import budget
from tasks.context import Transcript
from tasks.loop.state import Turn
from tasks.models import Step, StepKind, TaskStatus

EXPIRED_ERROR = "Nobody decided on this action before its deadline; it was not executed."
STOP_OPTIONS = ["Let it continue", "Stop the task"]


def ask_for_approval(
    turn: Turn, call_id: str, tool, arguments: dict, transcript: Transcript
) -> NoReturn:
    reason = next(
        (
            m["content"]
            for m in reversed(transcript.messages)
            if m["role"] == "assistant" and m.get("content")
        ),
        "",
    )

    def ask() -> None:
        approval = approval_request_create(
            task=turn.task,
            tool_name=tool.name,
            arguments=arguments,
            risk=tool.default_risk,
            reason=reason,
            call_id=call_id,
        )
        turn.record(
            StepKind.APPROVAL_WAIT,
            {
                "call_id": call_id,
                "name": tool.name,
                "arguments": arguments,
                "approval_id": approval.pk,
            },
        )

    turn.park_with(TaskStatus.WAITING_APPROVAL, f"Waiting for approval of {tool.name}.", ask)


def ask_for_budget(turn: Turn, refusal: budget.BudgetRefusal) -> NoReturn:
    def ask() -> None:
        approval = budget_raise_request_create(task=turn.task, refusal=refusal)
        turn.record(
            StepKind.APPROVAL_WAIT,
            {"budget": refusal.scope, "approval_id": approval.pk, "message": refusal.message},
        )

    turn.park_with(TaskStatus.BUDGET_EXHAUSTED, refusal.message, ask)


def escalate_call(turn: Turn, call_id: str, arguments: dict) -> NoReturn:
    """The model called `escalate`: a person answers, and the answer is the call's result."""

    def ask() -> None:
        escalation = escalation_create(
            task=turn.task,
            summary=arguments["summary"],
            evidence=arguments.get("evidence", []),
            options=arguments["options"],
            recommendation=arguments.get("recommendation", ""),
        )
        turn.record(
            StepKind.ESCALATION,
            {"call_id": call_id, "escalation_id": escalation.pk, "summary": arguments["summary"]},
        )

    turn.park_with(TaskStatus.WAITING_ESCALATION, f"Escalated: {arguments['summary']}", ask)


def escalate_loop(turn: Turn, why: str) -> NoReturn:
    """The loop breaker: stop before burning more money, and ask a person."""

    def ask() -> None:
        escalation = escalation_create(
            task=turn.task,
            summary=f"{turn.task.employee.name} stopped: {why}",
            evidence=[why],
            options=STOP_OPTIONS,
            recommendation="Stop the task",
        )
        turn.record(StepKind.ESCALATION, {"escalation_id": escalation.pk, "summary": why})

    turn.park_with(TaskStatus.WAITING_ESCALATION, f"Loop breaker: {why}", ask)


def escalate_expired(turn: Turn, call_id: str, name: str, arguments: dict) -> NoReturn:
    """Nobody decided in time: the call is answered "not executed" and a person is told.

    The result and the escalation commit together, so the call is no longer pending when
    the task resumes after the answer, and an expiry is never escalated twice.
    """
    summary = f"The approval of {name} expired without a decision."
    proposal = f"{turn.task.employee.name} proposed {name}: {json.dumps(redact(arguments))}"

    def ask() -> None:
        turn.record_result(call_id, name, arguments, "rejected", {"error": EXPIRED_ERROR})
        escalation = escalation_create(
            task=turn.task,
            summary=summary,
            evidence=[proposal[:1000]],
            options=STOP_OPTIONS,
            recommendation="Let it continue",
        )
        turn.record(StepKind.ESCALATION, {"escalation_id": escalation.pk, "summary": summary})

    turn.park_with(TaskStatus.WAITING_ESCALATION, summary, ask)


def check_repeats(turn: Turn, transcript: Transcript, name: str, arguments: dict) -> None:
    """The loop breaker, before a call the model already made with the same arguments."""
    same = sum(
        1
        for step in transcript.finished_calls
        if step.payload.get("name") == name and step.payload.get("arguments") == arguments
    )
    if same + 1 >= settings.LOOP_BREAKER_REPEATS:
        escalate_loop(turn, f"it called {name} with the same arguments {same + 1} times.")


def maybe_break_loop(turn: Turn) -> None:
    """The loop breaker, after a call that failed or was refused."""
    limit = settings.LOOP_BREAKER_ERRORS
    recent = [
        step.payload.get("status")
        for step in turn.steps
        if step.kind == StepKind.TOOL_CALL
        and step.seq > turn.reset_seq
        and step.payload.get("status") != "started"
    ][-limit:]
    if len(recent) == limit and all(status in ("error", "refused") for status in recent):
        escalate_loop(turn, f"its last {limit} tool calls failed or were refused.")


def answered_escalation(turn: Turn, wait: Step):
    """The escalation a step waits for, once answered; parks the task while it is open."""
    escalation = Escalation.objects.get(pk=wait.payload["escalation_id"])
    if escalation.status == EscalationStatus.OPEN:
        turn.park(TaskStatus.WAITING_ESCALATION, "Waiting for an answer to its escalation.")
    return escalation


def resume_escalated_call(turn: Turn, wait: Step, call_id: str, name: str) -> None:
    """The person's answer to an `escalate` call becomes the call's result."""
    escalation = answered_escalation(turn, wait)
    turn.record_result(
        call_id,
        name,
        {},
        "ok",
        {
            "answer": escalation.answer,
            "chosen_option": escalation.chosen_option,
            "answered_by": escalation.answered_by.get_username() if escalation.answered_by else "",
            "summary": f"a person answered: {escalation.chosen_option or escalation.answer}"[:300],
        },
    )


def resume_system_escalation(turn: Turn, step: Step) -> None:
    """The answer to an escalation the loop raised itself: go on, or stop the task."""
    escalation = answered_escalation(turn, step)
    answer = escalation.answer or escalation.chosen_option
    turn.record(
        StepKind.NOTE,
        {
            "escalation_id": escalation.pk,
            "message": {"role": "user", "content": f"A person answered your escalation: {answer}"},
        },
    )
    if (
        escalation.chosen_option == "Stop the task"
        or escalation.status == EscalationStatus.TAKEN_OVER
    ):
        turn.park(
            TaskStatus.CANCELLED,
            f"Stopped by {escalation.answered_by or 'a person'}: {answer}",
        )
