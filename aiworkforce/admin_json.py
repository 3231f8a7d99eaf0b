"""JSON edited by a person in the back office: shown indented in a box sized to it, and refused
with where the mistake is and what was expected ("Line 3, column 14: expected ',' or '}' after
a value") instead of Django's "Enter a valid JSON."."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from aiworkforce.storable import storable_problem, validate_storable

_VALUE = "a value (text in double quotes, a number, true, false, null, [...] or {...})"


def _innermost_bracket(text: str, pos: int) -> str:
    """The bracket, '{' or '[', that is open at `pos` (outside strings); '' at the top level."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _previous_char(text: str, pos: int) -> str:
    before = text[:pos].rstrip()
    return before[-1] if before else ""


def _expected(error: json.JSONDecodeError) -> str:
    """What the parser wanted at the error, in words."""
    text, pos, msg = error.doc, error.pos, error.msg
    here = text[pos : pos + 5]
    if here[:1] == "'":
        return 'JSON needs double quotes (") around names and text, not single quotes'
    for word, right in (("True", "true"), ("False", "false"), ("None", "null")):
        if here.startswith(word):
            return f"write {right} in lower case ({word} is Python, not JSON)"
    if msg.startswith("Illegal trailing comma"):
        closer = "}" if msg.endswith("object") else "]"
        return f"remove the comma before '{closer}': JSON allows no comma after the last entry"
    if msg.startswith("Expecting ',' delimiter"):
        closer = "}" if _innermost_bracket(text, pos) == "{" else "]"
        if pos >= len(text.rstrip()):
            return f"the JSON ends too early: a closing '{closer}' is missing"
        return f"expected ',' or '{closer}' after a value"
    if msg.startswith("Expecting property name"):
        if _previous_char(text, pos) == ",":
            return "a comma before '}' must be followed by another \"name\": value (remove it)"
        return 'expected a name in double quotes, as in {"name": value}'
    if msg.startswith("Expecting ':'"):
        return "expected ':' between a name and its value"
    if msg.startswith("Expecting value"):
        if pos >= len(text.rstrip()):
            return f"the JSON ends too early: expected {_VALUE}"
        if here[:1] == "]" and _previous_char(text, pos) == ",":
            return "a comma before ']' must be followed by another value (remove it)"
        return f"expected {_VALUE}"
    if msg.startswith("Extra data"):
        return "there is more after the end of the JSON (a missing ',' or bracket before it?)"
    if msg.startswith("Unterminated string"):
        return 'this text is never closed: a closing double quote (") is missing'
    if msg.startswith("Invalid control character"):
        return "a line break or tab inside text in quotes must be written \\n or \\t"
    if msg.startswith("Invalid \\uXXXX"):
        return "\\u must be followed by four hexadecimal digits"
    if msg.startswith("Invalid \\escape"):
        return "unknown escape after a backslash; write \\\\ for a backslash itself"
    return msg[0].lower() + msg[1:]


def json_syntax_message(error: json.JSONDecodeError) -> str:
    """ "Line 3, column 14: expected ',' or '}' after a value. The line reads: ..." """
    lines = error.doc.splitlines() or [""]
    line = lines[min(error.lineno, len(lines)) - 1].strip()
    shown = line if len(line) <= 70 else line[:67] + "..."
    reads = f" The line reads: {shown}" if shown else ""
    return f"Line {error.lineno}, column {error.colno}: {_expected(error)}.{reads}"


class JSONTextarea(forms.Textarea):
    """Monospace, as tall as its JSON (3 to 24 rows), no wider than its column."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"class": "json-editor", "spellcheck": "false", **(attrs or {})})

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        lines = str(value or "").count("\n") + 1
        context["widget"]["attrs"]["rows"] = max(3, min(lines + 1, 24))
        return context


class JSONEditorField(forms.JSONField):
    """A JSON form field that says where a mistake is and refuses what PostgreSQL cannot store.

    JSON escapes that decode to what PostgreSQL cannot store ("\\u0000", a lone "\\ud800") and
    nesting too deep to parse are refused with a message instead of failing as a 500.
    """

    widget = JSONTextarea

    def to_python(self, value):
        if self.disabled or value in self.empty_values or not isinstance(value, str):
            return super().to_python(value)
        try:
            converted = json.loads(value, cls=self.decoder)
        except json.JSONDecodeError as exc:
            raise ValidationError(json_syntax_message(exc), code="invalid") from None
        except RecursionError:
            raise ValidationError(
                "This JSON is nested too deeply to read.", code="invalid"
            ) from None
        validate_storable(converted, what="This JSON")
        return forms.fields.JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data, initial):
        try:
            value = super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)
        # Shown again as typed: re-encoding it would put a lone surrogate into the page.
        return forms.fields.InvalidJSONInput(data) if storable_problem(value) else value

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


# ModelAdmin.formfield_overrides for every model JSONField a person edits.
JSON_EDITOR = {models.JSONField: {"form_class": JSONEditorField, "widget": JSONTextarea}}
