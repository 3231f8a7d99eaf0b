"""Any OpenAI-compatible endpoint through the official `openai` SDK (chat completions with tools)."""

from __future__ import annotations

import logging
import re
import time
from functools import cache
from urllib.parse import urlsplit

import openai
from django.conf import settings
from openai._base_client import make_request_options
from openai.types.chat import ChatCompletion
from openai.types.completion_usage import CompletionUsage

from aiworkforce.llm.capabilities import TOKEN_PARAMETERS, model_info
from aiworkforce.llm.pricing import cost_of, price_for, unknown_price_warning
from aiworkforce.llm.types import (
    Completion,
    ModelMisconfigured,
    ModelTimedOut,
    ModelUnavailable,
    ToolCall,
)

logger = logging.getLogger(__name__)

_REQUEST_OPTIONS = make_request_options(security={"bearer_auth": True})
# What the SDK retries (with backoff, honouring Retry-After) before it raises: an outage. Any
# other status is the endpoint refusing this very request, and sending it again cannot help.
_TRANSIENT = {408, 409, 429}
# Hosts that take max_completion_tokens for every current model (OpenAI, Azure OpenAI).
_OPENAI_HOSTS = ("api.openai.com",)
_AZURE_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com")
# Words with which endpoints refuse a parameter they do not accept ("Unsupported parameter",
# "Unrecognized request argument supplied", pydantic's "Extra inputs are not permitted").
_REFUSED = re.compile(
    r"unsupported|not supported|does not support|unrecognized|unknown|not permitted|extra|"
    r"not allowed|only the default",
    re.IGNORECASE,
)
_HINTS = {
    401: "check OPENAI_API_KEY",
    403: "check that the key may use this model",
    404: "check the model name and the endpoint URL",
}

# Per endpoint and model, what a 400 taught us it refuses: {"token_parameter": ...,
# "temperature": False}. Kept for the life of the process (one worker learns it once).
_learned: dict[tuple[str, str], dict[str, object]] = {}


@cache
def _client(base_url: str, api_key: str, timeout: int, max_retries: int) -> openai.OpenAI:
    # One client per endpoint and process, so HTTP connections are kept alive between calls.
    # The SDK retries 408/409/429/5xx and connection errors with exponential backoff and
    # honours Retry-After; it never retries another 4xx.
    return openai.OpenAI(
        api_key=api_key, base_url=base_url or None, timeout=timeout, max_retries=max_retries
    )


def takes_max_completion_tokens(base_url: str) -> bool:
    """Does the endpoint take max_completion_tokens? OpenAI and Azure OpenAI do, for every model.

    Other OpenAI-compatible servers (Ollama, vLLM, llama.cpp) understand max_tokens, and some
    ignore max_completion_tokens without a word, which would leave the output unbounded.
    """
    if not base_url:
        return True  # the SDK's default: api.openai.com
    host = (urlsplit(base_url).hostname or "").lower()
    return host in _OPENAI_HOSTS or host.endswith(_AZURE_SUFFIXES)


class OpenAIProvider:
    offline = False

    def __init__(self, *, model: str, base_url: str, api_key: str) -> None:
        self.model = model
        self.base_url = base_url
        self.info = model_info(model)
        self.client = _client(
            base_url, api_key, settings.LLM_TIMEOUT_SECONDS, settings.LLM_MAX_RETRIES
        )

    def request_body(
        self, *, messages: list[dict], tools: list[dict], max_tokens: int, temperature: float
    ) -> dict:
        """The request as sent: the output limit under the name the endpoint and model take,
        and a temperature only where the model accepts one."""
        learned = _learned.get((self.base_url, self.model), {})
        body: dict = {"model": self.model, "messages": messages}
        body[self._token_parameter(learned)] = max_tokens
        if self.info.supports_temperature and learned.get("temperature", True):
            body["temperature"] = temperature
        if tools:
            body["tools"] = tools
        return body

    def _token_parameter(self, learned: dict) -> str:
        if learned.get("token_parameter"):
            return str(learned["token_parameter"])
        if self.info.token_parameter:
            return self.info.token_parameter
        if settings.OPENAI_TOKEN_PARAMETER in TOKEN_PARAMETERS:  # else "auto"
            return settings.OPENAI_TOKEN_PARAMETER
        return (
            "max_completion_tokens" if takes_max_completion_tokens(self.base_url) else "max_tokens"
        )

    def complete(
        self, *, messages: list[dict], tools: list[dict], max_tokens: int, temperature: float
    ) -> Completion:
        """One model call. max_tokens is the output (reasoning included) the call may produce."""
        started = time.perf_counter()
        corrected: set[str] = set()
        while True:
            body = self.request_body(
                messages=messages, tools=tools, max_tokens=max_tokens, temperature=temperature
            )
            try:
                # Our messages and tools are already plain JSON in the API's shape, so we skip
                # the SDK's parameter transform (it walks every message against typed
                # annotations and was most of our per-step CPU) and post the body as is.
                # Retries, auth and the typed parsing of the answer are still the SDK's.
                response = self.client.post(
                    "/chat/completions", body=body, cast_to=ChatCompletion, options=_REQUEST_OPTIONS
                )
                break
            except openai.APIStatusError as exc:
                correction = _correction(exc, body)
                if correction is None or correction[0] in corrected:
                    raise _status_error(exc, self.model) from None
                # One corrected retry per parameter, remembered for this endpoint and model.
                corrected.add(correction[0])
                _learned.setdefault((self.base_url, self.model), {}).update([correction])
                logger.info(
                    "model %s at %s refused a parameter (%s); from now on %s=%r",
                    self.model,
                    self.base_url or "api.openai.com",
                    _short(_error_text(exc)),
                    *correction,
                )
            except openai.APITimeoutError:
                raise ModelTimedOut(
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
        prompt_tokens, completion_tokens, reasoning_tokens = _usage(response.usage)
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
            # Some compatible servers send "" or whitespace for "no refusal".
            refusal=(message.refusal or "").strip() or None,
            reasoning_tokens=reasoning_tokens,
        )


def _usage(usage: CompletionUsage | None) -> tuple[int, int, int]:
    """(prompt, output, reasoning) tokens; the output includes the reasoning, as billed.

    OpenAI's completion_tokens already include completion_tokens_details.reasoning_tokens;
    an endpoint that reports more reasoning than completion tokens counts them apart, so
    they are added.
    """
    if usage is None:
        return 0, 0, 0
    details = usage.completion_tokens_details
    reasoning = (details.reasoning_tokens or 0) if details else 0
    output = usage.completion_tokens
    if reasoning > output:
        output += reasoning
    return usage.prompt_tokens, output, reasoning


def _correction(exc: openai.APIStatusError, body: dict) -> tuple[str, object] | None:
    """The change that answers a 400 refusing one of our parameters, if it is one we can make.

    An output limit is never dropped: only its name changes. A refused temperature is left out
    (the model's default applies).
    """
    if exc.status_code not in (400, 422):
        return None
    text = _error_text(exc)
    if not _REFUSED.search(text):
        return None

    def names(parameter: str) -> bool:
        return exc.param == parameter or re.search(rf"\b{parameter}\b", text) is not None

    if "max_tokens" in body and names("max_tokens"):
        return "token_parameter", "max_completion_tokens"
    if "max_completion_tokens" in body and names("max_completion_tokens"):
        return "token_parameter", "max_tokens"
    if "temperature" in body and names("temperature"):
        return "temperature", False
    return None


def _status_error(exc: openai.APIStatusError, model: str) -> ModelUnavailable:
    status = exc.status_code
    text = _short(_error_text(exc))
    if status in _TRANSIENT or status >= 500:
        if exc.code == "insufficient_quota":  # a 429 that is the account's, not the load's
            return ModelMisconfigured(
                f"Configuration problem: {text} (the model endpoint answered {status}: the "
                "account behind OPENAI_API_KEY has no quota left)."
            )
        return ModelUnavailable(
            f"The model endpoint answered {status} ({text}) "
            f"after {settings.LLM_MAX_RETRIES + 1} attempts."
        )
    hint = _HINTS.get(status, "check the model name and its settings (MODEL_CAPABILITIES)")
    return ModelMisconfigured(
        f"Configuration problem: {text} (the model endpoint answered {status} "
        f"for model '{model}'; {hint})."
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
