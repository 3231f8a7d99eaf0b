"""The offline engine: follows the employee's SOP tool hints literally and deterministically.

It is what runs without OPENAI_API_KEY, so the product works on a machine with no network. It
is not an LLM and never claims to be: everything it writes is labelled "offline mode".
Hint arguments may hold placeholders filled from the task: {input}, {title}, {first_email},
{first_url}, {first_reference} (the first code like "A-1002" or "INV-2043": an order, ticket or
invoice number). A step with "when" words is followed only when the task mentions one of them
(a support SOP looks an order up only when the request names one).

Lessons recalled for the task are applied literally too: an edit a person made to an earlier
call of the same tool is made again (a subject 'A' changed to 'B' is drafted as 'B'), and the
reason for a rejection is written into the draft. The final answer cites the lessons it applied.
Consecutive `delegate` hints go out together as parallel calls, so the delegated requests are
worked on at the same time; the final summary assembles what they reported.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiworkforce.llm.types import Completion, ToolCall

OFFLINE_LABEL = "[offline mode]"
DELEGATE = "delegate"
# The look-behind lets a match start only where a run of address characters starts, so a long
# run without an "@" is scanned once instead of once per character (quadratic: 200 kB took
# minutes). The leftmost match is the same: one starting inside a run would extend to its start.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s<>\"')]+")
# Bounded runs between word boundaries: one pass, whatever the input.
_REFERENCE = re.compile(r"\b[A-Z]{1,5}-\d{2,12}\b")


def step_applies(step: dict, text: str) -> bool:
    """A step without "when" always applies; one with it, when the text mentions a word of it."""
    words = step.get("when") or []
    lowered = text.lower()
    return not words or any(word.lower() in lowered for word in words)


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, replacement in values.items():
            if replacement:
                value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    return value


class OfflineEngine:
    offline = True
    model = "offline"

    def __init__(
        self, *, sop: list[dict], title: str, task_input: str, memories: list[dict] = ()
    ) -> None:
        about = f"{title}\n{task_input}"
        self.applies = [step_applies(step, about) for step in sop]
        self.hints = [
            step
            for step, applies in zip(sop, self.applies, strict=True)
            if applies and step.get("tool")
        ]
        # Recalled memories (payload dicts with id, kind, text, details): lessons are applied.
        self.memories = list(memories)
        self.steps = sop
        email, url = _EMAIL.search(task_input), _URL.search(task_input)
        reference = _REFERENCE.search(about)
        self.values = {
            "input": task_input,
            "title": title,
            "first_email": email.group(0) if email else "",
            "first_url": url.group(0) if url else "",
            "first_reference": reference.group(0) if reference else "",
        }

    def complete(
        self, *, messages: list[dict], tools: list[dict], max_tokens: int, temperature: float
    ) -> Completion:
        calls_made = sum(
            len(m.get("tool_calls") or []) for m in messages if m["role"] == "assistant"
        )
        prompt_tokens = max(1, len(json.dumps(messages)) // 4)
        if calls_made < len(self.hints):
            calls = [
                ToolCall(
                    id=f"offline_{calls_made + number}",
                    name=hint["tool"]["name"],
                    arguments=json.dumps(
                        self._apply_lessons(
                            hint["tool"]["name"],
                            _fill(hint["tool"].get("arguments", {}), self.values),
                        )
                    ),
                )
                for number, hint in enumerate(self._next_hints(calls_made), start=1)
            ]
            return Completion(
                content=None,
                tool_calls=calls,
                prompt_tokens=prompt_tokens,
                completion_tokens=max(1, sum(len(call.arguments) for call in calls) // 4),
                model=self.model,
                latency_ms=0,
                offline=True,
            )
        summary = self._summary(messages)
        return Completion(
            content=summary,
            tool_calls=[],
            prompt_tokens=prompt_tokens,
            completion_tokens=max(1, len(summary) // 4),
            model=self.model,
            latency_ms=0,
            offline=True,
        )

    def _lessons_for(self, tool: str) -> list[dict]:
        return [
            memory
            for memory in self.memories
            if memory.get("kind") == "lesson" and (memory.get("details") or {}).get("tool") == tool
        ]

    def _apply_lessons(self, tool: str, arguments: dict) -> dict:
        arguments = dict(arguments)
        for lesson in self._lessons_for(tool):
            details = lesson["details"]
            if details.get("decision") == "edited":
                for key, change in (details.get("changes") or {}).items():
                    if key in arguments and arguments[key] == change.get("from"):
                        arguments[key] = change.get("to")
            elif details.get("decision") == "rejected" and details.get("reason"):
                strings = [k for k, v in arguments.items() if isinstance(v, str)]
                if strings:  # the longest text (an email's body) carries the guidance
                    key = max(strings, key=lambda k: len(arguments[k]))
                    arguments[key] += (
                        f"\n\n(Following earlier guidance [m{lesson['id']}]: {details['reason']})"
                    )
        return arguments

    def _next_hints(self, calls_made: int) -> list[dict]:
        batch = [self.hints[calls_made]]
        if batch[0]["tool"]["name"] == DELEGATE:
            for hint in self.hints[calls_made + 1 :]:
                if hint["tool"]["name"] != DELEGATE:
                    break
                batch.append(hint)
        return batch

    def _summary(self, messages: list[dict]) -> str:
        outcomes = [m["content"] for m in messages if m["role"] == "tool"]
        lines, failed = [], []
        outcome_iter = iter(outcomes)
        for number, (step, applies) in enumerate(zip(self.steps, self.applies, strict=True), 1):
            line = f"{number}. {step['text']}"
            if not applies:
                line += f" (not needed: the task does not mention {' or '.join(step['when'])})"
            elif step.get("tool"):
                outcome = next(outcome_iter, "")
                if _error(outcome):
                    failed.append(f"{number} ({step['tool']['name']})")
                line += f" ({step['tool']['name']}: {_describe(outcome)})"
            lines.append(line)
        # A failed call is never reported as success: the first line says so, for the task
        # page and for whoever reads the result (a delegating colleague, a mail's sender).
        if failed:
            which = ", ".join(failed)
            lines.insert(
                0,
                f"{OFFLINE_LABEL} The standard operating procedure was not completed: "
                f"step{'' if len(failed) == 1 else 's'} {which} failed.",
            )
        else:
            lines.insert(0, f"{OFFLINE_LABEL} Followed the standard operating procedure:")
        applied = [
            f"[m{lesson['id']}]"
            for hint in self.hints
            for lesson in self._lessons_for(hint["tool"]["name"])
        ]
        if applied:
            lines.append("Lessons applied: " + ", ".join(dict.fromkeys(applied)))
        reports = [report for report in map(_delegated_report, outcomes) if report]
        if reports:
            lines.append("What the delegated requests reported:")
            lines.extend(reports)
        return "\n".join(lines)


def _delegated_report(tool_message: str) -> str:
    """One delegated task's outcome, for the summary that assembles them."""
    try:
        data = json.loads(tool_message)
    except ValueError:
        return ""
    if not isinstance(data, dict) or "delegated_task" not in data:
        return ""
    who = f"{data.get('employee', '')} (task #{data['delegated_task']})"
    if "error" in data:
        return f"- {who}: not done: {data['error']}"[:500]
    text = str(data.get("result") or data.get("summary") or "")
    text = text.removeprefix(OFFLINE_LABEL).strip()
    indented = "\n".join("    " + line for line in text.splitlines()[:12])
    return f"- {who}, {data.get('status', '')}:\n{indented}"


def _error(tool_message: str) -> str:
    """The error a tool result reports (a failure, a refusal, a rejection), or ""."""
    try:
        data = json.loads(tool_message)
    except ValueError:
        return ""
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def _describe(tool_message: str) -> str:
    try:
        data = json.loads(tool_message)
    except ValueError:
        return tool_message[:200] or "no result"
    if isinstance(data, dict):
        if "error" in data:
            return f"FAILED, not done: {data['error']}"[:300]
        if "summary" in data:
            return str(data["summary"])[:300]
    return json.dumps(data)[:200]
