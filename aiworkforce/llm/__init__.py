"""The model layer: an OpenAI-compatible provider, or the offline engine when no key is set."""

from __future__ import annotations

from django.conf import settings

from aiworkforce.llm.offline import OFFLINE_LABEL, OfflineEngine
from aiworkforce.llm.openai_provider import OpenAIProvider
from aiworkforce.llm.pricing import cost_of, estimate_tokens, price_for
from aiworkforce.llm.types import ChatProvider, Completion, ModelUnavailable, ToolCall

__all__ = [
    "OFFLINE_LABEL",
    "ChatProvider",
    "Completion",
    "ModelUnavailable",
    "OfflineEngine",
    "OpenAIProvider",
    "ToolCall",
    "cost_of",
    "estimate_tokens",
    "offline_mode",
    "price_for",
    "provider_for",
]


def offline_mode() -> bool:
    return not settings.OPENAI_API_KEY


def provider_for(task) -> ChatProvider:
    """The provider for a task's employee: its own model and endpoint, else the defaults."""
    employee = task.employee
    if offline_mode():
        return OfflineEngine(sop=employee.sop, title=task.title, task_input=task.input)
    return OpenAIProvider(
        model=employee.model_name or settings.DEFAULT_MODEL,
        base_url=employee.model_base_url or settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY,
    )
