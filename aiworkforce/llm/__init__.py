"""The model layer: an OpenAI-compatible provider, or the offline engine when no key is set."""

from __future__ import annotations

from django.conf import settings

from aiworkforce.llm.capabilities import ModelInfo, model_info
from aiworkforce.llm.offline import OFFLINE_LABEL, OfflineEngine
from aiworkforce.llm.openai_provider import OpenAIProvider
from aiworkforce.llm.pricing import cost_of, estimate_tokens, price_for
from aiworkforce.llm.types import (
    ChatProvider,
    Completion,
    ModelMisconfigured,
    ModelTimedOut,
    ModelUnavailable,
    ToolCall,
)

__all__ = [
    "OFFLINE_LABEL",
    "ChatProvider",
    "Completion",
    "ModelInfo",
    "ModelMisconfigured",
    "ModelTimedOut",
    "ModelUnavailable",
    "OfflineEngine",
    "OpenAIProvider",
    "ToolCall",
    "cost_of",
    "estimate_tokens",
    "model_info",
    "offline_mode",
    "price_for",
    "provider_for",
]


def offline_mode() -> bool:
    return not settings.OPENAI_API_KEY


def endpoint_allowed(base_url: str) -> bool:
    """May the API key be sent to this endpoint? Only OPENAI_BASE_URL and the allow-list."""
    normalised = base_url.rstrip("/")
    allowed = {settings.OPENAI_BASE_URL, *settings.OPENAI_ALLOWED_BASE_URLS}
    return normalised in {url.rstrip("/") for url in allowed if url}


class _RefusedEndpoint:
    """Stands in for a provider whose endpoint is not allowed: every call is refused."""

    offline = False

    def __init__(self, model: str, base_url: str) -> None:
        self.model, self.base_url = model, base_url

    def complete(self, **kwargs):
        # A setting to fix, not an outage: the task parks as "Model settings wrong".
        raise ModelMisconfigured(
            f"Configuration problem: the employee's model endpoint {self.base_url} is not in "
            "OPENAI_ALLOWED_BASE_URLS, so the API key is not sent there."
        )


def provider_for(task, *, memories: list[dict] = ()) -> ChatProvider:
    """The provider for a task's employee: its own model and endpoint, else the defaults.

    `memories` (recalled for the task) matter only to the offline engine, which applies
    lessons literally; a real model reads them in the prompt.
    """
    employee = task.employee
    if offline_mode():
        return OfflineEngine(
            sop=employee.sop, title=task.title, task_input=task.input, memories=memories
        )
    model = employee.model_name or settings.DEFAULT_MODEL
    base_url = employee.model_base_url or settings.OPENAI_BASE_URL
    if employee.model_base_url and not endpoint_allowed(employee.model_base_url):
        return _RefusedEndpoint(model, employee.model_base_url)
    return OpenAIProvider(model=model, base_url=base_url, api_key=settings.OPENAI_API_KEY)
