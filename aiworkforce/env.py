"""Strict readers of environment variables.

Every reader raises ImproperlyConfigured naming the variable when a value is malformed, so a
typo in production stops start-up instead of silently falling back to a default. An empty (or
blank) value means "not set" for every type: `SESSION_COOKIE_SECURE=` left in an env file keeps
the secure default, it does not read as false.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    """The variable's value, stripped; None when it is unset or blank (so the default applies)."""
    value = (os.environ.get(name) or "").strip()
    return value or None


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be a boolean (true/false, 1/0, yes/no), got {value!r}."
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}.")
    return number


def env_decimal(name: str, default: str) -> Decimal:
    value = _raw(name) or default
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, got {value!r}.") from None
    if number < 0 or not number.is_finite():
        raise ImproperlyConfigured(f"{name} must be a finite number of at least 0, got {value!r}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(
            f"{name} must be a comma-separated list without empty items, got {value!r}."
        )
    return items


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = _raw(name) or default
    if value not in choices:
        raise ImproperlyConfigured(
            f"{name} must be one of {', '.join(sorted(choices))}, got {value!r}."
        )
    return value


def env_json_prices(name: str) -> dict[str, tuple[Decimal, Decimal]]:
    """A price table: {"model": [dollars per million input tokens, per million output tokens]}."""
    value = _raw(name)
    if not value:
        return {}
    try:
        table = json.loads(value)
        prices = {
            str(model): (Decimal(str(pair[0])), Decimal(str(pair[1])))
            for model, pair in table.items()
        }
    except (ValueError, TypeError, AttributeError, IndexError, InvalidOperation, KeyError):
        raise ImproperlyConfigured(
            f'{name} must be JSON like {{"gpt-4o-mini": [0.15, 0.60]}} '
            "(US dollars per million input and output tokens)."
        ) from None
    if any(p < 0 or not p.is_finite() for pair in prices.values() for p in pair):
        raise ImproperlyConfigured(f"{name}: prices must be finite numbers of at least 0.")
    return prices


def env_json_retention(name: str, default: dict[str, int]) -> dict[str, int]:
    """Days to keep each memory kind: {"episode": 90, "fact": 365}."""
    from django.core.exceptions import ValidationError

    from employees.validators import validate_retention

    value = _raw(name)
    if not value:
        return dict(default)
    try:
        table = json.loads(value)
        validate_retention(table)
    except (ValueError, ValidationError) as exc:
        message = exc.messages[0] if isinstance(exc, ValidationError) else "it is not JSON"
        raise ImproperlyConfigured(
            f'{name} must be JSON like {{"episode": 90}} (days per memory kind): {message}'
        ) from None
    return table


def env_json_capabilities(name: str) -> dict[str, dict]:
    """Per-model overrides of the model capability table: {"my-model": {"context_window": 32768}}."""
    from aiworkforce.llm.capabilities import parse_capabilities

    value = _raw(name)
    if not value:
        return {}
    try:
        return parse_capabilities(json.loads(value))
    except ValueError as exc:
        reason = "it is not JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ImproperlyConfigured(
            f'{name} must be JSON like {{"my-model": {{"context_window": 32768, '
            f'"max_output": 4096, "reasoning": false}}}}: {reason}.'
        ) from None
