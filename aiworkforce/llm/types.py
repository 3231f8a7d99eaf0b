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

    def as_message(self) -> dict:
        message: dict = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.as_message_part() for call in self.tool_calls]
        return message


class ModelUnavailable(Exception):
    """The endpoint failed after every retry, or refused the request; the message is for people."""


class ChatProvider(Protocol):
    model: str
    offline: bool

    def complete(
        self, *, messages: list[dict], tools: list[dict], max_tokens: int, temperature: float
    ) -> Completion: ...
