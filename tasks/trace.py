"""Describing steps for people: on the task page and in `run_task`'s output."""

from __future__ import annotations

import json

from tasks.models import Step, StepKind
from tasks.selectors import is_failed_step

TOOL_STATUS_WORDS = {
    "started": "started",
    "ok": "done",
    "error": "failed",
    "unknown": "outcome unknown",
    "refused": "refused",
    "rejected": "not done",
    "proposed": "proposed",
}


def _fitted(context: dict | None) -> str:
    """How a prompt was made to fit the model's window (tasks.context_window), in words."""
    if not context:
        return ""
    parts = [
        f"{cut['what']} cut to {cut['kept']:,} of {cut['chars']:,} characters"
        for cut in context.get("cut", [])
    ]
    if context.get("dropped_turns"):
        count = context["dropped_turns"]
        parts.append(f"{count} earlier turn{'' if count == 1 else 's'} left out")
    return f"; to fit its {context.get('window', 0):,}-token window: " + ", ".join(parts)


def describe_step(step: Step) -> str:
    payload = step.payload
    if step.kind == StepKind.LLM_CALL:
        message = payload["message"]
        calls = ", ".join(c["function"]["name"] for c in message.get("tool_calls", []))
        what = f"asks for {calls}" if calls else "answers"
        if payload.get("refusal"):
            what = f"declines: {payload['refusal']}"[:300]
        model = "offline engine" if payload.get("offline") else payload.get("model")
        recalled = len(payload.get("recalled") or [])
        memories = f", with {recalled} recalled memor{'y' if recalled == 1 else 'ies'}"
        fitted = _fitted(payload.get("context"))
        return f"Model call ({model}) {what}" + (memories if recalled else "") + fitted
    if step.kind == StepKind.TOOL_CALL:
        result = payload.get("result") or {}
        summary = result.get("summary") or result.get("error") or ""
        status = TOOL_STATUS_WORDS.get(payload["status"], payload["status"])
        return f"{payload['name']} {status}{': ' + summary if summary else ''}"[:400]
    if step.kind == StepKind.APPROVAL_WAIT:
        if "budget" in payload:
            return f"Waits for a budget raise: {payload.get('message', '')}"
        return f"Waits for approval of {payload.get('name')} (request #{payload['approval_id']})"
    if step.kind == StepKind.ESCALATION:
        return f"Escalates to a person: {payload.get('summary', '')}"
    if step.kind == StepKind.DELEGATION:
        verb = "Keeps waiting for" if payload.get("extended") else "Delegates to"
        return (
            f"{verb} @{payload.get('to', '?')} (task #{payload.get('delegated_task')}): "
            f"{(payload.get('arguments') or {}).get('instructions', '')}"
        )[:400]
    if step.kind == StepKind.FINAL:
        return "Final answer"
    if step.kind == StepKind.NOTE:
        text = (payload.get("message") or {}).get("content") or payload.get("text") or "Note"
        return text[:400]
    if step.kind == StepKind.ERROR:
        return f"Error: {payload.get('error', '')}"[:400]
    return json.dumps(payload)[:200]


def trace_items(steps: list[Step], *, escalation_ids: set[int] = frozenset()) -> list[dict]:
    """The task page's trace: each step in words, failed ones marked, the final answer's text.

    An escalation shown in the page's Escalations section is referred to, not repeated.
    """
    items = []
    for step in steps:
        text, body = describe_step(step), ""
        escalation = step.payload.get("escalation_id") if step.kind == StepKind.ESCALATION else None
        if escalation in escalation_ids:
            text = "Escalates to a person: the question and its answer are under Escalations above"
        elif step.kind == StepKind.FINAL:
            body = step.payload.get("result") or ""
        items.append(
            {
                "step": step,
                "text": text,
                "body": body,
                "failed": is_failed_step(step),
                "escalation": escalation if escalation in escalation_ids else None,
            }
        )
    return items
