"""The fake OpenAI server, exercised through the real ``openai`` SDK (no database needed)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.openai_server import FakeOpenAIServer, dynamic, error, reply

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]  # 30 characters


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def client(server: FakeOpenAIServer, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=max_retries)


def test_plain_reply_with_usage(server: FakeOpenAIServer) -> None:
    server.enqueue(reply("Paris."))
    completion = client(server).chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-test"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Paris."
    assert choice.message.tool_calls is None
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 1)
    assert completion.usage.total_tokens == 8


def test_default_reply_when_queue_is_empty(server: FakeOpenAIServer) -> None:
    sdk = client(server)
    for _ in range(2):
        completion = sdk.chat.completions.create(model="m", messages=MESSAGES)
        assert completion.choices[0].message.content == "Done."
    assert server.calls == 2


def test_parallel_tool_calls(server: FakeOpenAIServer) -> None:
    server.enqueue(
        reply(
            tool_calls=[("search", {"query": "Paris"}), ("lookup", {"id": 7})],
            prompt_tokens=100,
            completion_tokens=20,
        )
    )
    completion = client(server).chat.completions.create(model="m", messages=MESSAGES)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None
    assert [call.id for call in calls] == ["call_1", "call_2"]
    assert [call.type for call in calls] == ["function", "function"]
    assert [call.function.name for call in calls] == ["search", "lookup"]
    assert [json.loads(call.function.arguments) for call in calls] == [
        {"query": "Paris"},
        {"id": 7},
    ]
    assert completion.usage is not None
    assert completion.usage.total_tokens == 120


def test_malformed_arguments_are_delivered_verbatim(server: FakeOpenAIServer) -> None:
    server.enqueue(reply(tool_calls=[("search", '{"query": "Par')]))
    completion = client(server).chat.completions.create(model="m", messages=MESSAGES)

    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.arguments == '{"query": "Par'
    with pytest.raises(json.JSONDecodeError):
        json.loads(calls[0].function.arguments)


def test_rate_limit_then_success_is_retried_by_the_sdk(server: FakeOpenAIServer) -> None:
    server.enqueue(error(429, "Slow down.", headers={"Retry-After": "0"}), reply("Made it."))
    completion = client(server, max_retries=2).chat.completions.create(model="m", messages=MESSAGES)

    assert completion.choices[0].message.content == "Made it."
    assert server.calls == 2
    assert [r["headers"]["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]


def test_rate_limit_without_retries_raises(server: FakeOpenAIServer) -> None:
    server.enqueue(error(429, "Slow down."))
    with pytest.raises(openai.RateLimitError) as excinfo:
        client(server).chat.completions.create(model="m", messages=MESSAGES)
    assert excinfo.value.status_code == 429
    assert excinfo.value.code == "rate_limit_exceeded"
    assert "Slow down." in str(excinfo.value)


def test_dynamic_serves_every_request(server: FakeOpenAIServer) -> None:
    # "500 forever"; retry-after-ms keeps the SDK's retries fast.
    server.enqueue(dynamic(lambda body: error(500, headers={"retry-after-ms": "1"})))
    with pytest.raises(openai.InternalServerError):
        client(server, max_retries=2).chat.completions.create(model="m", messages=MESSAGES)
    assert server.calls == 3  # max_retries=2 means three attempts

    server.reset()
    server.enqueue(dynamic(lambda body: reply(f"echo {body['messages'][-1]['content']}")))
    sdk = client(server)
    for word in ("one", "two", "three"):
        messages = [{"role": "user", "content": word}]
        completion = sdk.chat.completions.create(model="m", messages=messages)
        assert completion.choices[0].message.content == f"echo {word}"
    assert server.calls == 3


def test_embeddings_are_normalised_and_deterministic(server: FakeOpenAIServer) -> None:
    sdk = client(server)
    first = sdk.embeddings.create(model="embed", input=["alpha", "beta"], dimensions=64)
    again = sdk.embeddings.create(model="embed", input="alpha", encoding_format="float")
    default_dims = sdk.embeddings.create(model="embed", input="alpha", encoding_format="float")

    assert first.object == "list"
    assert [item.index for item in first.data] == [0, 1]
    assert all(len(item.embedding) == 64 for item in first.data)
    for item in first.data:
        assert math.fsum(x * x for x in item.embedding) == pytest.approx(1.0, abs=1e-5)
    assert first.data[0].embedding != first.data[1].embedding
    assert len(again.data[0].embedding) == 384
    assert again.data[0].embedding == default_dims.data[0].embedding
    # The SDK asks for base64 float32 by default; it must decode to the same vector.
    alpha64 = sdk.embeddings.create(model="embed", input="alpha", dimensions=384).data[0]
    assert alpha64.embedding == pytest.approx(again.data[0].embedding, abs=1e-6)


def test_requests_are_recorded(server: FakeOpenAIServer) -> None:
    client(server).chat.completions.create(model="m", messages=MESSAGES, temperature=0)

    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer test"
    assert request["body"]["messages"] == MESSAGES
    assert request["body"]["temperature"] == 0


def test_unknown_path_and_streaming_are_rejected(server: FakeOpenAIServer) -> None:
    sdk = client(server)
    with pytest.raises(openai.NotFoundError):
        sdk.models.list()
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
