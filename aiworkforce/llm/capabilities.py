"""What a model can take: its context window, its output limit and the parameters it accepts.

A starting table for common models; a deployment overrides or extends it with
MODEL_CAPABILITIES (JSON, read in settings). A model is looked up by its exact name, else by
the longest known prefix ("gpt-4o-2024-08-06" → "gpt-4o", "llama3.1:70b" → "llama3.1"), in
lower case, also without an organisation prefix ("Qwen/Qwen2.5-7B-Instruct" → "qwen2.5");
unknown models get a conservative default (the "*" entry of MODEL_CAPABILITIES changes it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

from django.conf import settings

TokenParameter = Literal["max_completion_tokens", "max_tokens"]
TOKEN_PARAMETERS = ("max_completion_tokens", "max_tokens")
DEFAULT_KEY = "*"


@dataclass(frozen=True)
class ModelInfo:
    # Prompt and output together: a call whose prompt plus allowed output exceeds it is refused.
    context_window: int
    # The most tokens one call may produce; for a reasoning model its hidden reasoning included.
    max_output: int
    # Thinks before it answers: reasoning tokens are billed as output and count in max_output.
    reasoning: bool = False
    # False: the model accepts only its default temperature, so none is sent.
    supports_temperature: bool = True
    # How the output limit must be named; None: as the endpoint takes it (max_completion_tokens
    # for OpenAI and Azure OpenAI, max_tokens elsewhere, see OPENAI_TOKEN_PARAMETER).
    token_parameter: TokenParameter | None = None


DEFAULT_INFO = ModelInfo(context_window=8192, max_output=4096)


def _reasoning(context_window: int, max_output: int) -> ModelInfo:
    """OpenAI's reasoning models: max_completion_tokens only, the default temperature only."""
    return ModelInfo(
        context_window,
        max_output,
        reasoning=True,
        supports_temperature=False,
        token_parameter="max_completion_tokens",  # noqa: S106 (a parameter name, not a secret)
    )


# From the providers' model pages; open models at the context length they were trained for
# (a server may run them with less: Ollama's default num_ctx is smaller, so set it or override).
KNOWN_MODELS: dict[str, ModelInfo] = {
    "gpt-3.5-turbo": ModelInfo(16_385, 4_096),
    "gpt-4": ModelInfo(8_192, 8_192),
    "gpt-4-turbo": ModelInfo(128_000, 4_096),
    "gpt-4o": ModelInfo(128_000, 16_384),
    "gpt-4o-mini": ModelInfo(128_000, 16_384),
    "gpt-4.1": ModelInfo(1_047_576, 32_768),
    "gpt-4.1-mini": ModelInfo(1_047_576, 32_768),
    "gpt-4.1-nano": ModelInfo(1_047_576, 32_768),
    "o1": _reasoning(200_000, 100_000),
    "o1-mini": _reasoning(128_000, 65_536),
    "o1-preview": _reasoning(128_000, 32_768),
    "o3": _reasoning(200_000, 100_000),
    "o3-mini": _reasoning(200_000, 100_000),
    "o4-mini": _reasoning(200_000, 100_000),
    "gpt-5": _reasoning(400_000, 128_000),
    "gpt-5-mini": _reasoning(400_000, 128_000),
    "gpt-5-nano": _reasoning(400_000, 128_000),
    "gpt-5-chat": ModelInfo(128_000, 16_384),
    "llama3": ModelInfo(8_192, 4_096),
    "llama3.1": ModelInfo(131_072, 4_096),
    "llama3.2": ModelInfo(131_072, 4_096),
    "llama3.3": ModelInfo(131_072, 4_096),
    "llama-3.1": ModelInfo(131_072, 4_096),
    "llama-3.2": ModelInfo(131_072, 4_096),
    "llama-3.3": ModelInfo(131_072, 4_096),
    "meta-llama-3.1": ModelInfo(131_072, 4_096),
    "qwen2.5": ModelInfo(32_768, 8_192),
    "qwen3": ModelInfo(40_960, 8_192, reasoning=True),
    "mistral": ModelInfo(32_768, 4_096),
    "mistral-nemo": ModelInfo(131_072, 4_096),
    "gemma3": ModelInfo(131_072, 8_192),
    "deepseek-r1": ModelInfo(131_072, 8_192, reasoning=True),
}

_FIELDS = {f.name: f for f in fields(ModelInfo)}


def model_info(model: str) -> ModelInfo:
    """What `model` can take: the table's entry, with the deployment's override merged over it.

    The most specific name wins: an override applies when it names the model at least as
    precisely as the built-in entry that matched (so {"gpt-4": ...} leaves gpt-4o alone).
    """
    overrides: dict[str, dict] = settings.MODEL_CAPABILITIES
    known_key = _longest_match(KNOWN_MODELS, model)
    override_key = _longest_match(overrides, model)
    if known_key is not None:
        info = KNOWN_MODELS[known_key]
    else:
        info = replace(DEFAULT_INFO, **overrides.get(DEFAULT_KEY, {}))
    if override_key is not None and len(override_key) >= len(known_key or ""):
        info = replace(info, **overrides[override_key])
    if info.max_output > info.context_window:  # an override lowered only the window
        info = replace(info, max_output=info.context_window)
    return info


def known_context_window(model: str) -> int | None:
    """The model's window when the table or the deployment names the model, else None.

    Only such a window bounds what an endpoint can bill for one prompt: the default for
    unknown models and an employee's own setting are assumptions, not the endpoint's limit.
    """
    overrides: dict[str, dict] = settings.MODEL_CAPABILITIES
    if _longest_match(KNOWN_MODELS, model) is None and _longest_match(overrides, model) is None:
        return None
    return model_info(model).context_window


def _longest_match(table: dict, model: str) -> str | None:
    """The table's key equal to the model's name, else the longest key the name starts with."""
    best: str | None = None
    for name in _names(model):
        if name in table and name != DEFAULT_KEY:
            return name
        for key in table:
            if key != DEFAULT_KEY and name.startswith(key) and len(key) > len(best or ""):
                best = key
    return best


def _names(model: str) -> list[str]:
    lowered = model.strip().lower()
    bare = lowered.rsplit("/", 1)[-1]
    return [lowered] if bare == lowered else [lowered, bare]


def parse_capabilities(table: object) -> dict[str, dict]:
    """Check a MODEL_CAPABILITIES table; raises ValueError saying what is wrong."""
    if not isinstance(table, dict):
        raise ValueError("it is not a JSON object of model names")
    parsed: dict[str, dict] = {}
    for model, entry in table.items():
        if not isinstance(entry, dict) or not entry:
            raise ValueError(f"the entry of {model!r} is not a non-empty object")
        for name, value in entry.items():
            if name not in _FIELDS:
                raise ValueError(
                    f"{model!r} has an unknown field {name!r} (known: {', '.join(_FIELDS)})"
                )
            if name in ("context_window", "max_output"):
                if type(value) is not int or value < 1:
                    raise ValueError(f"{model!r}: {name} must be a whole number of at least 1")
            elif name == "token_parameter":
                if value is not None and value not in TOKEN_PARAMETERS:
                    raise ValueError(
                        f"{model!r}: token_parameter must be one of {', '.join(TOKEN_PARAMETERS)}"
                        " or null"
                    )
            elif type(value) is not bool:
                raise ValueError(f"{model!r}: {name} must be true or false")
        window, output = entry.get("context_window"), entry.get("max_output")
        if window is not None and output is not None and output > window:
            raise ValueError(f"{model!r}: max_output cannot exceed context_window")
        parsed[str(model).strip().lower()] = dict(entry)
    return parsed
