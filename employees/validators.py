"""Validators shared by models, admin forms and services; messages are for a manager to act on."""

from __future__ import annotations

import itertools
import zoneinfo
from collections.abc import Iterable
from datetime import time
from typing import Any

import jsonschema
from croniter import croniter
from django.core.exceptions import ValidationError

from aiworkforce.schema_messages import first_error, path_text, problem_text

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def validate_cron(expression: str) -> None:
    expression = (expression or "").strip()
    if len(expression.split()) != 5:
        raise ValidationError(
            "Enter a cron expression of five fields: minute hour day-of-month month day-of-week, "
            "for example '0 9 * * 1-5' for weekdays at 09:00.",
            code="cron_fields",
        )
    if not croniter.is_valid(expression):
        raise ValidationError(
            f"'{expression}' is not a valid cron expression: minutes go 0-59, hours 0-23, days "
            "1-31, months 1-12, weekdays 0-6 (Sunday is 0).",
            code="cron_invalid",
        )


def validate_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"'{name}' is not a known time zone; use an IANA name such as 'Europe/Berlin' or 'UTC'.",
            code="timezone",
        ) from None


def validate_working_windows(windows: Iterable[tuple[int, time, time]]) -> None:
    """Refuse windows that end before they start or overlap another window on the same day."""
    by_day: dict[int, list[tuple[time, time]]] = {}
    errors = []
    for weekday, start, end in windows:
        if start >= end:
            errors.append(
                ValidationError(
                    f"{WEEKDAYS[weekday]}: the window {start:%H:%M}-{end:%H:%M} must end after it "
                    "starts (split a window that crosses midnight into two).",
                    code="window_order",
                )
            )
            continue
        by_day.setdefault(weekday, []).append((start, end))
    for weekday, spans in sorted(by_day.items()):
        spans.sort()
        for (start_a, end_a), (start_b, end_b) in itertools.pairwise(spans):
            if start_b < end_a:
                errors.append(
                    ValidationError(
                        f"{WEEKDAYS[weekday]}: the windows {start_a:%H:%M}-{end_a:%H:%M} and "
                        f"{start_b:%H:%M}-{end_b:%H:%M} overlap; merge them into one.",
                        code="window_overlap",
                    )
                )
    if errors:
        raise ValidationError(errors)


SOP_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1},
            "tool": {
                "type": ["object", "null"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "arguments": {"type": "object"},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
            # Words: the step applies only to a task that mentions one of them.
            "when": {"type": "array", "items": {"type": "string", "minLength": 1}},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
}


_SOP_VALIDATOR = jsonschema.Draft202012Validator(SOP_SCHEMA)


def _sop_where(path: list) -> str:
    """[1, "tool", "name"] -> "SOP step 2, tool.name"; [] -> "SOP" (the list itself)."""
    if not path:
        return "SOP"
    inside = path_text(path[1:])
    return f"SOP step {path[0] + 1}" + (f", {inside}" if inside else "")


def validate_sop(steps: Any) -> None:
    """An SOP is an ordered list of {"text": ..., "tool": {"name": ..., "arguments": {...}}}."""
    from tasks.tools import UnknownToolError, get_tool

    error = first_error(_SOP_VALIDATOR, steps)
    if error is not None:
        raise ValidationError(
            f"{_sop_where(list(error.path))}: {problem_text(error)}. Each step needs a 'text' "
            "and may have a 'tool' hint like "
            '{"name": "send_email", "arguments": {...}}.',
            code="sop_shape",
        )
    for number, step in enumerate(steps, start=1):
        hint = step.get("tool")
        if hint:
            try:
                get_tool(hint["name"])
            except UnknownToolError as exc:
                raise ValidationError(f"SOP step {number}: {exc}", code="sop_tool") from None


def validate_hex_colour(value: str) -> None:
    if (
        len(value) != 7
        or value[0] != "#"
        or any(c not in "0123456789abcdefABCDEF" for c in value[1:])
    ):
        raise ValidationError(
            f"'{value}' is not a colour; use the #rrggbb form, e.g. #4f46e5.", code="colour"
        )


RETENTION_KINDS = ("fact", "lesson", "episode", "document")


def validate_retention(value) -> None:
    """{"episode": 90, ...}: known memory kinds to a whole number of days (1 to 36500)."""
    if not isinstance(value, dict):
        raise ValidationError(
            'Retention is an object of kind to days, e.g. {"episode": 90}.', code="retention"
        )
    for kind, days in value.items():
        if kind not in RETENTION_KINDS:
            raise ValidationError(
                f"'{kind}' is not a memory kind; use {', '.join(RETENTION_KINDS)}.",
                code="retention_kind",
            )
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
            raise ValidationError(
                f"Retention for '{kind}' must be a whole number of days from 1 to 36500 "
                f"(got {days!r}); leave the kind out to keep its memories until deleted.",
                code="retention_days",
            )
