"""What the loop exchanges with a model, whichever provider answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model produced it; may be malformed

    def as_message_part(self) -> dict:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class Completion:
    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int
    completion_tokens: int
    model: str
    latency_ms: int
    offline: bool = False
    warnings: list[str] = field(default_factory=list)
    cost: Decimal = Decimal("0")
    # The model declined to answer (OpenAI sends the reason here, with no content).
    refusal: str | None = None
    # Of completion_tokens (which include them): tokens the model spent thinking.
    reasoning_tokens: int = 0

    def as_message(self) -> dict:
        # A refusal is the model's answer: it is recorded, and sent back on a resume, as such.
        content = self.content if self.content is not None else self.refusal
        message: dict = {"role": "assistant", "content": content}
        if self.tool_calls:
            message["tool_calls"] = [call.as_message_part() for call in self.tool_calls]
        return message


class ModelUnavailable(Exception):
    """The endpoint failed after every retry, or refused the request; the message is for people."""


class ModelTimedOut(ModelUnavailable):
    """The endpoint did not answer in time: it may still have answered, and billed, the call."""


class ModelMisconfigured(ModelUnavailable):
    """The endpoint refused the request itself (400/401/403/404...): no retry can help.

    A wrong model name, key, endpoint or model setting; the message starts with
    "Configuration problem:" and carries the endpoint's own words.
    """


class ChatProvider(Protocol):
    model: str
    offline: bool

    def complete(
        self, *, messages: list[dict], tools: list[dict], max_tokens: int, temperature: float
    ) -> Completion: ...
