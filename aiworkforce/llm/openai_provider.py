"""Any OpenAI-compatible endpoint through the official `openai` SDK (chat completions with tools)."""

from __future__ import annotations

import time
from functools import cache

import openai
from django.conf import settings
from openai._base_client import make_request_options
from openai.types.chat import ChatCompletion

from aiworkforce.llm.pricing import cost_of, price_for, unknown_price_warning
from aiworkforce.llm.types import Completion, ModelUnavailable, ToolCall

_REQUEST_OPTIONS = make_request_options(security={"bearer_auth": True})


@cache
def _client(base_url: str, api_key: str, timeout: int, max_retries: int) -> openai.OpenAI:
    # One client per endpoint and process, so HTTP connections are kept alive between calls.
    # The SDK retries 408/409/429/5xx and connection errors with exponential backoff and
    # honours Retry-After.
    return openai.OpenAI(
        api_key=api_key, base_url=base_url or None, timeout=timeout, max_retries=max_retries
    )


class OpenAIProvider:
    offline = False

    def __init__(self, *, model: str, base_url: str, api_key: str) -> None:
        self.model = model
        self.client = _client(
            base_url, api_key, settings.LLM_TIMEOUT_SECONDS, settings.LLM_MAX_RETRIES
        )

    def complete(
        self, *, messages: list[dict], tools: list[dict], max_tokens: int, temperature: float
    ) -> Completion:
        started = time.perf_counter()
        kwargs: dict = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        kwargs["temperature"] = temperature
        if tools:
            kwargs["tools"] = tools
        try:
            # Our messages and tools are already plain JSON in the API's shape, so we skip the
            # SDK's parameter transform (it walks every message against typed annotations and
            # was most of our per-step CPU) and post the body as is. Retries, auth and the
            # typed parsing of the answer are still the SDK's.
            response = self.client.post(
                "/chat/completions", body=kwargs, cast_to=ChatCompletion, options=_REQUEST_OPTIONS
            )
        except openai.APIStatusError as exc:
            raise ModelUnavailable(
                f"The model endpoint answered {exc.status_code} "
                f"({_short(_error_text(exc))}) after {settings.LLM_MAX_RETRIES + 1} attempts."
            ) from None
        except openai.APITimeoutError:
            raise ModelUnavailable(
                f"The model endpoint did not answer within {settings.LLM_TIMEOUT_SECONDS}s "
                f"({settings.LLM_MAX_RETRIES + 1} attempts)."
            ) from None
        except openai.APIConnectionError as exc:
            raise ModelUnavailable(
                f"Could not reach the model endpoint: {_short(str(exc))}."
            ) from None
        latency_ms = int((time.perf_counter() - started) * 1000)
        if not response.choices:
            raise ModelUnavailable("The model endpoint returned no answer (empty choices).")
        message = response.choices[0].message
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        _, _, known = price_for(self.model)
        return Completion(
            content=message.content,
            tool_calls=[
                ToolCall(
                    id=call.id, name=call.function.name, arguments=call.function.arguments or ""
                )
                for call in (message.tool_calls or [])
                if call.type == "function"
            ],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=self.model,
            latency_ms=latency_ms,
            warnings=[] if known else [unknown_price_warning(self.model)],
            cost=cost_of(self.model, prompt_tokens, completion_tokens),
        )


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 200 else text[:197] + "..."
