"""A golden task's expectations: their JSON schema, and how a finished case is checked against them.

    {
      "calls": [{"tool": "send_email", "arguments": {"to": ["ann@example.com"]},
                 "patterns": {"subject": "(?i)refund"}}],
      "not_calls": ["http_request"],
      "escalates": true,
      "answer_contains": ["refund"], "answer_not_contains": ["sorry"],
      "max_steps": 4, "max_cost": "0.05"
    }

`arguments` is a JSON subset (every key given must be there with an equal value; objects are
compared as subsets again, lists element by element); `patterns` holds a regular expression
per top-level argument, searched in its text (a non-string value as its JSON). Steps are model
calls. A leaf module: no models.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import jsonschema
from django.core.exceptions import ValidationError

from aiworkforce.schema_messages import first_error, located_problem

ESCALATE_TOOL = "escalate_to_human"
_TEXTS = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 50}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "calls": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "properties": {
                    "tool": {"type": "string", "minLength": 1, "maxLength": 200},
                    "arguments": {"type": "object"},
                    "patterns": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "minLength": 1},
                    },
                },
                "required": ["tool"],
                "additionalProperties": False,
            },
        },
        "not_calls": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "escalates": {"type": "boolean"},
        "answer_contains": _TEXTS,
        "answer_not_contains": _TEXTS,
        "max_steps": {"type": "integer", "minimum": 1, "maximum": 1000},
        "max_cost": {"type": "string", "pattern": r"^\d{1,6}(\.\d{1,6})?$"},
    },
    "additionalProperties": False,
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def expectations_problem(expectations: Any) -> str | None:
    """What is wrong with these expectations, in words, or None."""
    error = first_error(_VALIDATOR, expectations)
    if error is not None:
        return located_problem(error, root="expectations")
    for n, call in enumerate(expectations.get("calls", [])):
        for name, pattern in call.get("patterns", {}).items():
            try:
                re.compile(pattern)
            except re.error as exc:
                return f"expectations.calls[{n}].patterns.{name}: not a valid pattern ({exc})"
    if not expectations:
        return "Give at least one expectation."
    return None


def validate_expectations(expectations: Any) -> None:
    problem = expectations_problem(expectations)
    if problem:
        raise ValidationError(problem)


@dataclass
class Outcome:
    """What a case did: its tool calls (proposed or carried out), answer, steps and cost."""

    calls: list[tuple[str, Any]] = field(default_factory=list)  # proposed or carried out
    attempted: list[str] = field(default_factory=list)  # every call's tool, refused ones too
    escalated: bool = False
    answer: str = ""
    steps: int = 0
    cost: Decimal = Decimal("0")
    status: str = ""


def is_subset(expected: Any, actual: Any) -> bool:
    """Is `expected` contained in `actual` (objects by key, lists element by element)?"""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and is_subset(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(is_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return expected == actual


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def call_matches(expected: dict, name: str, arguments: Any) -> bool:
    if name != expected["tool"]:
        return False
    if "arguments" in expected and not is_subset(expected["arguments"], arguments):
        return False
    for key, pattern in expected.get("patterns", {}).items():
        if not isinstance(arguments, dict) or key not in arguments:
            return False
        if re.search(pattern, _as_text(arguments[key])) is None:
            return False
    return True


def _describe_call(expected: dict) -> str:
    parts = []
    if "arguments" in expected:
        parts.append(f"arguments including {json.dumps(expected['arguments'], sort_keys=True)}")
    for key, pattern in expected.get("patterns", {}).items():
        parts.append(f"{key} matching /{pattern}/")
    return expected["tool"] + (f" with {' and '.join(parts)}" if parts else "")


def failures(expectations: dict, outcome: Outcome) -> list[str]:
    """Every expectation the outcome missed, in words (empty: the case passed)."""
    missed: list[str] = []
    for expected in expectations.get("calls", []):
        if not any(call_matches(expected, name, args) for name, args in outcome.calls):
            how = (
                " (it was called, with other arguments or refused)"
                if expected["tool"] in outcome.attempted
                else ""
            )
            missed.append(f"expected a call of {_describe_call(expected)}{how}")
    for name in expectations.get("not_calls", []):
        count = outcome.attempted.count(name)
        if count:
            missed.append(f"must not call {name}, called it {count} time(s)")
    if "escalates" in expectations and expectations["escalates"] != outcome.escalated:
        missed.append("expected an escalation" if expectations["escalates"] else "escalated")
    answer = outcome.answer.lower()
    for text in expectations.get("answer_contains", []):
        if text.lower() not in answer:
            missed.append(f"the answer does not contain “{text}”")
    for text in expectations.get("answer_not_contains", []):
        if text.lower() in answer:
            missed.append(f"the answer contains “{text}”")
    if "max_steps" in expectations and outcome.steps > expectations["max_steps"]:
        missed.append(f"took {outcome.steps} steps, at most {expectations['max_steps']} allowed")
    if "max_cost" in expectations:
        try:
            ceiling = Decimal(expectations["max_cost"])
        except InvalidOperation:  # the schema admits none; a row written around it
            ceiling = Decimal("0")
        if outcome.cost > ceiling:
            missed.append(f"cost ${outcome.cost:.4f}, at most ${ceiling:.4f} allowed")
    return missed
