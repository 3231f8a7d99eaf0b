"""JSON-schema errors in plain English, with where in the document they are.

jsonschema's own messages ("[] should be non-empty", "'x' is a required property",
"Additional properties are not allowed ('foo' was unexpected)") are written for programmers.
The SOP and grant-scope validators say the same things here in words a manager acts on:
"scope.allowed_domains: must have at least 1 entry". A leaf: it imports jsonschema only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object ({...})",
    "array": "a list ([...])",
    "null": "null",
}


def path_text(path: Iterable[Any], root: str = "") -> str:
    """["allowed_domains", 0] -> "allowed_domains[0]" (after `root`, as in "scope.allowed_domains[0]")."""
    text = root
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_words(schema: dict[str, Any]) -> str:
    """What a schema's "type" asks for: "a list of text", "an object ({...}) or null"."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = []
    for kind in kinds:
        items = schema.get("items")
        if kind == "array" and isinstance(items, dict) and isinstance(items.get("type"), str):
            item = TYPE_WORDS.get(items["type"], items["type"])
            words.append("a list of " + ("objects" if items["type"] == "object" else item))
        else:
            words.append(TYPE_WORDS.get(kind, str(kind)))
    return " or ".join(words)


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def problem_text(error: jsonschema.ValidationError) -> str:
    """What is wrong, without where: "must be a list of text", "'name' is required"."""
    keyword, expected, schema = error.validator, error.validator_value, error.schema
    instance = error.instance
    if keyword in ("anyOf", "oneOf") and error.context:
        return problem_text(best_match(error.context))
    if keyword == "required":
        missing = [name for name in expected if isinstance(instance, dict) and name not in instance]
        name = missing[0] if missing else expected[0]
        return f"'{name}' is required"
    if keyword == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = sorted(set(instance) - set(known)) if isinstance(instance, dict) else []
        unknown = ", ".join(f"'{name}'" for name in extra) or "this field"
        allowed = f"; use {', '.join(known)}" if known else "; no fields are allowed here"
        return f"{unknown} {'is' if len(extra) <= 1 else 'are'} not a known field{allowed}"
    if keyword == "maxProperties" and expected == 0:
        return "takes no settings: leave it empty ({})"
    if keyword == "type":
        return f"must be {_type_words(schema)}, not {_show(instance)}"
    if keyword == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if keyword == "maxLength":
        return f"must be at most {expected} characters (it has {len(instance)})"
    if keyword == "minItems":
        return f"must have at least {_entries(expected)}"
    if keyword == "maxItems":
        return f"must have at most {_entries(expected)}"
    if keyword == "uniqueItems":
        return "lists an entry twice; each entry must appear once"
    if keyword == "enum":
        return f"{_show(instance)} is not allowed; use one of {', '.join(map(_show, expected))}"
    if keyword == "const":
        return f"must be {_show(expected)}"
    if keyword == "minimum":
        return f"must be at least {expected}"
    if keyword == "maximum":
        return f"must be at most {expected}"
    if keyword == "exclusiveMinimum":
        return f"must be more than {expected}"
    if keyword == "exclusiveMaximum":
        return f"must be less than {expected}"
    if keyword == "pattern":
        hint = schema.get("description")
        return f"{_show(instance)} is not in the expected form" + (f" ({hint})" if hint else "")
    if keyword == "format":
        return f"{_show(instance)} is not a valid {str(expected).replace('-', ' ')}"
    return error.message


def _path_key(error: jsonschema.ValidationError) -> tuple:
    # Steps in document order; at one place, a missing field before what is inside it.
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in error.path)


def first_error(
    validator: jsonschema.protocols.Validator, instance: Any
) -> jsonschema.ValidationError | None:
    """The error a person should fix first: the earliest in the document."""
    errors = sorted(validator.iter_errors(instance), key=_path_key)
    return errors[0] if errors else None


def located_problem(error: jsonschema.ValidationError, *, root: str) -> str:
    """ "scope.allowed_domains[0]: "x" is not in the expected form"; at the top, the problem only
    ("'allowed_domains' is required"), since the caller has named the document."""
    if not error.path:
        return problem_text(error)
    return f"{path_text(error.path, root)}: {problem_text(error)}"


def _limits(schema: dict[str, Any]) -> str:
    parts = []
    if "minimum" in schema and "maximum" in schema:
        parts.append(f"from {schema['minimum']} to {schema['maximum']}")
    else:
        for key, words in (
            ("minimum", "at least"),
            ("exclusiveMinimum", "more than"),
            ("maximum", "at most"),
        ):
            if key in schema:
                parts.append(f"{words} {schema[key]}")
    if schema.get("minItems"):
        parts.append(f"at least {_entries(schema['minItems'])}")
    if isinstance(schema.get("items"), dict) and "enum" in schema["items"]:
        parts.append("each one of " + ", ".join(map(str, schema["items"]["enum"])))
    return ", ".join(parts)


def schema_in_words(schema: dict[str, Any]) -> list[str]:
    """An object schema's fields, one line each: "allowed_domains (required): a list of text,
    at least 1 entry". [] for a schema that takes nothing."""
    if schema.get("maxProperties") == 0 or not schema.get("properties"):
        return []
    required = set(schema.get("required", []))
    lines = []
    for name, field in schema["properties"].items():
        kind = _type_words(field) if "type" in field else ""
        if "enum" in field:
            kind = "one of " + ", ".join(map(str, field["enum"]))
        detail = ", ".join(part for part in (kind, _limits(field)) if part)
        if field.get("description"):
            detail += f" — {field['description']}" if detail else field["description"]
        lines.append(f"{name}{' (required)' if name in required else ''}: {detail}")
    return lines
