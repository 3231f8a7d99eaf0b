"""The offline engine: follows the employee's SOP tool hints literally and deterministically.

It is what runs without OPENAI_API_KEY, so the product works on a machine with no network. It
is not an LLM and never claims to be: everything it writes is labelled "offline mode".
Hint arguments may hold placeholders filled from the task: {input}, {title}, {first_email},
{first_url}.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiworkforce.llm.types import Completion, ToolCall

OFFLINE_LABEL = "[offline mode]"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s<>\"')]+")


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

    def __init__(self, *, sop: list[dict], title: str, task_input: str) -> None:
        self.hints = [step for step in sop if step.get("tool")]
        self.steps = sop
        email, url = _EMAIL.search(task_input), _URL.search(task_input)
        self.values = {
            "input": task_input,
            "title": title,
            "first_email": email.group(0) if email else "",
            "first_url": url.group(0) if url else "",
        }

    def complete(
        self, *, messages: list[dict], tools: list[dict], max_tokens: int, temperature: float
    ) -> Completion:
        calls_made = sum(1 for m in messages if m["role"] == "assistant" and m.get("tool_calls"))
        prompt_tokens = max(1, len(json.dumps(messages)) // 4)
        if calls_made < len(self.hints):
            hint = self.hints[calls_made]["tool"]
            arguments = json.dumps(_fill(hint.get("arguments", {}), self.values))
            call = ToolCall(id=f"offline_{calls_made + 1}", name=hint["name"], arguments=arguments)
            return Completion(
                content=None,
                tool_calls=[call],
                prompt_tokens=prompt_tokens,
                completion_tokens=max(1, len(arguments) // 4),
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

    def _summary(self, messages: list[dict]) -> str:
        outcomes = [m["content"] for m in messages if m["role"] == "tool"]
        lines = [f"{OFFLINE_LABEL} Followed the standard operating procedure:"]
        outcome_iter = iter(outcomes)
        for number, step in enumerate(self.steps, start=1):
            line = f"{number}. {step['text']}"
            if step.get("tool"):
                line += f" ({step['tool']['name']}: {_describe(next(outcome_iter, ''))})"
            lines.append(line)
        return "\n".join(lines)


def _describe(tool_message: str) -> str:
    try:
        data = json.loads(tool_message)
    except ValueError:
        return tool_message[:200] or "no result"
    if isinstance(data, dict):
        if "error" in data:
            return f"not done: {data['error']}"[:300]
        if "summary" in data:
            return str(data["summary"])[:300]
    return json.dumps(data)[:200]
