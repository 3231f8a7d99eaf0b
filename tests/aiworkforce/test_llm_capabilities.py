"""The model capability table: lookup by name and prefix, deployment overrides, strict parsing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from aiworkforce.env import env_json_capabilities
from aiworkforce.llm import ModelInfo, model_info, price_for


@pytest.fixture(autouse=True)
def _no_overrides(settings):
    settings.MODEL_CAPABILITIES = {}


@pytest.mark.parametrize(
    ("model", "window", "output", "reasoning"),
    [
        ("gpt-4o", 128_000, 16_384, False),
        ("gpt-4o-2024-08-06", 128_000, 16_384, False),  # a dated snapshot: its prefix
        ("gpt-4o-mini-2024-07-18", 128_000, 16_384, False),  # the longest prefix wins
        ("gpt-4.1-nano", 1_047_576, 32_768, False),
        ("o3-mini", 200_000, 100_000, True),
        ("o4-mini-2025-04-16", 200_000, 100_000, True),
        ("gpt-5-mini", 400_000, 128_000, True),
        ("llama3.1:70b", 131_072, 4_096, False),  # Ollama tags
        ("Qwen/Qwen2.5-7B-Instruct", 32_768, 8_192, False),  # vLLM's organisation/name
        ("mistral:7b-instruct", 32_768, 4_096, False),
    ],
)
def test_known_models_by_name_or_prefix(model, window, output, reasoning):
    info = model_info(model)
    assert (info.context_window, info.max_output, info.reasoning) == (window, output, reasoning)


def test_reasoning_models_take_max_completion_tokens_and_only_the_default_temperature():
    for model in ("o1", "o3", "o4-mini", "gpt-5", "gpt-5-nano"):
        info = model_info(model)
        assert info.token_parameter == "max_completion_tokens"
        assert info.supports_temperature is False
    assert model_info("gpt-4o").token_parameter is None  # the endpoint decides
    assert model_info("gpt-4o").supports_temperature is True


def test_an_unknown_model_gets_the_conservative_default():
    assert model_info("my-fine-tune") == ModelInfo(context_window=8192, max_output=4096)


def test_the_deployment_overrides_and_extends_the_table(settings):
    settings.MODEL_CAPABILITIES = {
        "my-model": {"context_window": 32_768, "max_output": 4_096, "reasoning": False},
        "gpt-4o": {"context_window": 64_000},
        "gpt-4": {"context_window": 4_000},  # less specific than gpt-4o: not for gpt-4o
        "*": {"context_window": 16_384},
    }
    assert model_info("my-model-v2") == ModelInfo(32_768, 4_096)
    assert model_info("gpt-4o-2024-08-06") == ModelInfo(64_000, 16_384)  # merged over
    assert model_info("gpt-4-0613").context_window == 4_000
    assert model_info("gpt-4-0613").max_output == 4_000  # never more than the window
    assert model_info("anything-else") == ModelInfo(16_384, 4_096)


def test_capabilities_are_read_strictly(monkeypatch):
    monkeypatch.setenv("MODEL_CAPABILITIES", "")
    assert env_json_capabilities("MODEL_CAPABILITIES") == {}
    monkeypatch.setenv("MODEL_CAPABILITIES", '{"My-Model": {"context_window": 32768}}')
    assert env_json_capabilities("MODEL_CAPABILITIES") == {"my-model": {"context_window": 32768}}
    for bad, reason in [
        ("not json", "it is not JSON"),
        ('["gpt-4o"]', "not a JSON object"),
        ('{"m": {"context_windw": 1}}', "unknown field 'context_windw'"),
        ('{"m": {"context_window": "big"}}', "whole number"),
        ('{"m": {"max_output": 0}}', "at least 1"),
        ('{"m": {"reasoning": "yes"}}', "true or false"),
        ('{"m": {"token_parameter": "max_output_tokens"}}', "token_parameter must be one of"),
        ('{"m": {"context_window": 1000, "max_output": 2000}}', "cannot exceed"),
        ('{"m": {}}', "non-empty object"),
    ]:
        monkeypatch.setenv("MODEL_CAPABILITIES", bad)
        with pytest.raises(ImproperlyConfigured, match="MODEL_CAPABILITIES must be JSON") as raised:
            env_json_capabilities("MODEL_CAPABILITIES")
        assert reason in str(raised.value), bad


def test_reasoning_models_have_prices():
    for model, price_in, price_out in [
        ("o3", "2.00", "8.00"),
        ("o4-mini", "1.10", "4.40"),
        ("gpt-5", "1.25", "10.00"),
        ("gpt-5-mini", "0.25", "2.00"),
        ("gpt-5-nano", "0.05", "0.40"),
    ]:
        assert price_for(model) == (Decimal(price_in), Decimal(price_out), True)
