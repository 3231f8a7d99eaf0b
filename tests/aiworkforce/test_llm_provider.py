"""The OpenAI-compatible provider against the fake endpoint: which parameters it sends, what
it retries, and how it reports refusals, reasoning tokens and configuration problems."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aiworkforce.llm import ModelUnavailable, openai_provider
from aiworkforce.llm.openai_provider import OpenAIProvider
from tests.fakes.openai_server import dynamic, error, reply

MESSAGES = [{"role": "user", "content": "Summarise the order history."}]


@pytest.fixture(autouse=True)
def _forget_learned_parameters(monkeypatch):
    monkeypatch.setattr(openai_provider, "_learned", {}, raising=False)


def _provider(server, model: str = "gpt-4o-mini") -> OpenAIProvider:
    return OpenAIProvider(model=model, base_url=server.base_url, api_key="sk-test")


def _complete(provider: OpenAIProvider, max_tokens: int = 500, temperature: float = 0.2):
    return provider.complete(
        messages=MESSAGES, tools=[], max_tokens=max_tokens, temperature=temperature
    )


def _bodies(server) -> list[dict]:
    return [r["body"] for r in server.requests if r["path"] == "/v1/chat/completions"]


# --- item 8: the output limit's name and the temperature ---------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("", True),  # the SDK's default endpoint, api.openai.com
        ("https://api.openai.com/v1", True),
        ("https://contoso.openai.azure.com/openai/v1/", True),
        ("https://contoso.cognitiveservices.azure.com/openai/v1", True),
        ("http://localhost:11434/v1", False),  # Ollama
        ("http://vllm.internal:8000/v1", False),
        ("https://api.openai.com.evil.example/v1", False),
    ],
)
def test_only_openai_and_azure_are_assumed_to_take_max_completion_tokens(base_url, expected):
    assert openai_provider.takes_max_completion_tokens(base_url) is expected


def test_an_older_compatible_server_gets_max_tokens_and_the_temperature(model_server):
    model_server.enqueue(reply("ok"))
    _complete(_provider(model_server), max_tokens=321, temperature=0.3)
    [body] = _bodies(model_server)
    assert body["max_tokens"] == 321 and "max_completion_tokens" not in body
    assert body["temperature"] == 0.3


def test_the_deployment_can_name_the_output_limit_for_its_endpoint(model_server, settings):
    settings.OPENAI_TOKEN_PARAMETER = "max_completion_tokens"
    model_server.enqueue(reply("ok"))
    _complete(_provider(model_server), max_tokens=321)
    [body] = _bodies(model_server)
    assert body["max_completion_tokens"] == 321 and "max_tokens" not in body


def test_a_known_reasoning_model_gets_max_completion_tokens_and_no_temperature(model_server):
    model_server.reasoning_models = {"o3"}
    model_server.enqueue(reply("Summary."))
    completion = _complete(_provider(model_server, "o3"), max_tokens=700)
    assert completion.content == "Summary."
    [body] = _bodies(model_server)  # right the first time: no refused request
    assert body["max_completion_tokens"] == 700
    assert "max_tokens" not in body and "temperature" not in body


def test_an_unknown_reasoning_model_is_corrected_once_per_parameter_and_remembered(
    model_server,
):
    model_server.reasoning_models = {"o9"}  # not in the capability table
    model_server.enqueue(reply("first"))
    provider = _provider(model_server, "o9-mini")
    assert _complete(provider, max_tokens=400).content == "first"
    first = _bodies(model_server)
    # max_tokens refused → renamed; then the temperature refused → left out; then it works.
    assert [("max_tokens" in b, "temperature" in b) for b in first] == [
        (True, True),
        (False, True),
        (False, False),
    ]
    assert first[-1]["max_completion_tokens"] == 400  # the limit is renamed, never dropped
    model_server.reset()
    model_server.reasoning_models = {"o9"}
    model_server.enqueue(reply("second"))
    # A new provider (the next task) of this process remembers: one request.
    assert _complete(_provider(model_server, "o9-mini")).content == "second"
    [body] = _bodies(model_server)
    assert "max_completion_tokens" in body and "temperature" not in body


def test_a_server_that_does_not_know_max_completion_tokens_gets_max_tokens(model_server, settings):
    settings.OPENAI_TOKEN_PARAMETER = "max_completion_tokens"
    model_server.refused_parameters = {"max_completion_tokens"}
    model_server.enqueue(reply("ok"))
    assert _complete(_provider(model_server), max_tokens=222).content == "ok"
    bodies = _bodies(model_server)
    assert len(bodies) == 2 and bodies[-1]["max_tokens"] == 222


def test_the_same_parameter_is_not_corrected_twice(model_server):
    refusal = "Unsupported parameter: 'max_tokens' is not supported with this model."
    model_server.enqueue(dynamic(lambda body: error(400, refusal, param="max_tokens")))
    with pytest.raises(ModelUnavailable, match="Configuration problem"):
        _complete(_provider(model_server))
    # max_tokens → max_completion_tokens (refused by this odd endpoint too) → stop.
    assert model_server.calls == 2


# --- item 8: reasoning tokens are output ------------------------------------------------------


def test_reasoning_tokens_are_billed_as_output(model_server):
    model_server.reasoning_models = {"o3"}
    model_server.enqueue(
        reply("Short.", prompt_tokens=1000, completion_tokens=5000, reasoning_tokens=4900)
    )
    completion = _complete(_provider(model_server, "o3"))
    assert (completion.completion_tokens, completion.reasoning_tokens) == (5000, 4900)
    # o3: $2 / $8 per million tokens; the 4,900 hidden tokens are paid for.
    assert completion.cost == Decimal("0.042")
    assert completion.warnings == []


def test_reasoning_reported_apart_from_the_completion_is_added(model_server):
    # Some compatible servers count the thinking apart (completion_tokens < reasoning_tokens).
    model_server.enqueue(
        reply("Short.", prompt_tokens=1000, completion_tokens=100, reasoning_tokens=900)
    )
    completion = _complete(_provider(model_server))
    assert completion.completion_tokens == 1000
    # gpt-4o-mini: $0.15 / $0.60 per million tokens.
    assert completion.cost == Decimal("0.00075")


# --- item 9: what is retried ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "hint"),
    [
        (400, "Invalid schema for function 'lookup'.", "MODEL_CAPABILITIES"),
        (401, "Incorrect API key provided: sk-test.", "check OPENAI_API_KEY"),
        (403, "Project does not have access to model gpt-4o-mini.", "may use this model"),
        (404, "The model 'gpt-4o-mnii' does not exist.", "check the model name"),
    ],
)
def test_a_refused_request_is_sent_once_and_called_a_configuration_problem(
    model_server, settings, status, message, hint
):
    settings.LLM_MAX_RETRIES = 3
    model_server.enqueue(dynamic(lambda body: error(status, message)))
    with pytest.raises(openai_provider.ModelMisconfigured) as raised:
        _complete(_provider(model_server))
    assert model_server.calls == 1
    text = str(raised.value)
    assert text.startswith(f"Configuration problem: {message} (the model endpoint answered")
    assert str(status) in text and hint in text
    assert "attempts" not in text


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
def test_outages_are_retried_then_reported_as_unavailable(model_server, settings, status):
    settings.LLM_MAX_RETRIES = 2
    model_server.enqueue(
        dynamic(lambda body: error(status, "busy", headers={"retry-after-ms": "1"}))
    )
    with pytest.raises(ModelUnavailable) as raised:
        _complete(_provider(model_server))
    assert not isinstance(raised.value, openai_provider.ModelMisconfigured)
    assert model_server.calls == 3
    assert str(raised.value) == f"The model endpoint answered {status} (busy) after 3 attempts."


def test_an_exhausted_quota_is_a_configuration_problem(model_server, settings):
    settings.LLM_MAX_RETRIES = 0
    model_server.enqueue(
        dynamic(
            lambda body: error(429, "You exceeded your current quota.", code="insufficient_quota")
        )
    )
    with pytest.raises(openai_provider.ModelMisconfigured, match="no quota left"):
        _complete(_provider(model_server))


# --- item 10: a refusal -----------------------------------------------------------------------


def test_a_refusal_is_returned_as_the_answer(model_server):
    model_server.enqueue(reply(refusal="I can't help with that request."))
    completion = _complete(_provider(model_server))
    assert completion.content is None
    assert completion.refusal == "I can't help with that request."
    assert completion.as_message() == {
        "role": "assistant",
        "content": "I can't help with that request.",
    }


@pytest.mark.parametrize("content", ["Here is the summary.", None])
def test_a_refusal_of_only_whitespace_is_no_refusal(model_server, content):
    model_server.enqueue(reply(content, refusal=" \n\t "))
    completion = _complete(_provider(model_server))
    assert completion.refusal is None
    assert completion.as_message() == {"role": "assistant", "content": content}
