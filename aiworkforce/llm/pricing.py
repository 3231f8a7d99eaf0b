"""Token prices (US dollars per million tokens) and the cost of one call."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

# A starting table (OpenAI's list prices for standard processing, uncached input); deployments
# override or extend it with MODEL_PRICES. Exact names only: a dated snapshot may be priced
# differently (gpt-4o-2024-05-13 was $5/$15), so it gets the default price and a warning.
# Open models have no entry: what they cost depends on who serves them.
KNOWN_PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1-nano": (Decimal("0.10"), Decimal("0.40")),
    # Reasoning models: their hidden reasoning tokens are billed as output.
    "o1": (Decimal("15.00"), Decimal("60.00")),
    "o1-mini": (Decimal("1.10"), Decimal("4.40")),
    "o3": (Decimal("2.00"), Decimal("8.00")),
    "o3-mini": (Decimal("1.10"), Decimal("4.40")),
    "o4-mini": (Decimal("1.10"), Decimal("4.40")),
    "gpt-5": (Decimal("1.25"), Decimal("10.00")),
    "gpt-5-mini": (Decimal("0.25"), Decimal("2.00")),
    "gpt-5-nano": (Decimal("0.05"), Decimal("0.40")),
    "offline": (Decimal("0"), Decimal("0")),
}
MILLION = Decimal(1_000_000)


def price_for(model: str) -> tuple[Decimal, Decimal, bool]:
    """(input price, output price, known) for a model; unknown models use the default price."""
    table = {**KNOWN_PRICES, **settings.MODEL_PRICES}
    if model in table:
        price_in, price_out = table[model]
        return price_in, price_out, True
    return settings.DEFAULT_PRICE_PER_MTOK_IN, settings.DEFAULT_PRICE_PER_MTOK_OUT, False


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    price_in, price_out, _ = price_for(model)
    return (price_in * prompt_tokens + price_out * completion_tokens) / MILLION


def unknown_price_warning(model: str) -> str:
    return (
        f"No price is configured for model '{model}'; its cost is estimated at the default "
        f"${settings.DEFAULT_PRICE_PER_MTOK_IN}/${settings.DEFAULT_PRICE_PER_MTOK_OUT} per million "
        "tokens. Add it to MODEL_PRICES."
    )


def estimate_tokens(messages: list[dict], tools_chars: int) -> int:
    """A deliberately generous estimate of prompt tokens, for fitting a prompt to a window.

    About three characters a token for ASCII text, and every other character counted as more
    than a token (Japanese or Chinese text has about one token per character): each text
    counts (2 x UTF-8 bytes - characters) / 3. tools_chars is the length of the tools' JSON,
    computed once per run by the caller. (The budget's reservation does not use this: it
    bounds the bill by bytes, see tasks.budget.prompt_token_ceiling.)
    """
    units = tools_chars
    for message in messages:
        units += _units(message.get("content") or "") + 16
        for call in message.get("tool_calls", ()):
            units += _units(call["function"]["name"]) + 32
            units += _units(call["function"].get("arguments") or "")
    return units // 3 + 16


def _units(text: str) -> int:
    if text.isascii():
        return len(text)
    return 2 * len(text.encode("utf-8", "surrogatepass")) - len(text)
