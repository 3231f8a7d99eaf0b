"""Form fields generated from a JSON schema (a tool's scope, a tool's arguments), and back.

No raw JSON on the hire form: a list of strings is a textarea with one item per line, an enum a
select (or checkboxes for a list of them), a number a number field, a boolean a checkbox, an
object of strings "Name: value" lines. What cannot be shown as a field is kept as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LONG_TEXT = {"body", "instructions", "summary", "text", "expected_result", "query"}
HINTS = {
    "allowed_domains": "One per line: example.com allows exactly that domain, *.example.com its subdomains.",
    "allowed_hosts": "One per line, e.g. status.example.com or *.internal.example.com (add :8443 for one port only).",
    "allowed_handles": "One handle per line: employees outside the usual collaboration lines it may ask.",
    "allowed_methods": "Leave all unticked to allow only GET.",
    "to": "One address per line; {first_email} is the first address in the task.",
    "options": "One option per line.",
    "evidence": "One item per line.",
    "headers": "One header per line, as Name: value.",
    "url": "{first_url} is the first link in the task.",
}


@dataclass
class Field:
    name: str  # the form field's name
    key: str  # the property's name in the schema
    label: str
    kind: str  # text, textarea, lines, number, checkbox, select, choices, pairs
    value: Any = ""
    choices: list[str] = field(default_factory=list)
    help: str = ""
    required: bool = False
    step: str = "any"

    @property
    def rows(self) -> int:
        if self.kind in ("lines", "pairs"):
            return min(8, max(2, str(self.value).count("\n") + 2))
        return 3


def label_of(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _kind(schema: dict, key: str) -> tuple[str, list[str]]:
    kind = schema.get("type")
    if "enum" in schema:
        return "select", [str(choice) for choice in schema["enum"]]
    if kind == "array":
        items = schema.get("items") or {}
        if "enum" in items:
            return "choices", [str(choice) for choice in items["enum"]]
        return "lines", []
    if kind in ("integer", "number"):
        return "number", []
    if kind == "boolean":
        return "checkbox", []
    if kind == "object":
        return "pairs", []
    return ("textarea" if key in LONG_TEXT else "text"), []


def _shown(kind: str, value: Any) -> Any:
    if value is None:
        return "" if kind != "choices" else []
    if kind == "lines":
        return "\n".join(str(item) for item in value) if isinstance(value, list) else str(value)
    if kind == "pairs":
        return "\n".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else ""
    if kind == "choices":
        return [str(item) for item in value] if isinstance(value, list) else []
    if kind == "checkbox":
        return value is True
    return str(value)


def fields_for(schema: dict, values: dict, prefix: str) -> list[Field]:
    """One field per property of an object schema, filled with `values`."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields = []
    for key, prop in properties.items():
        kind, choices = _kind(prop, key)
        help_text = HINTS.get(key) or prop.get("description", "")
        if kind == "number":
            bounds = [
                f"at least {prop[b]}" if b == "minimum" else f"at most {prop[b]}"
                for b in ("minimum", "maximum")
                if b in prop
            ]
            help_text = help_text or (", ".join(bounds).capitalize() + "." if bounds else "")
        fields.append(
            Field(
                name=f"{prefix}{key}",
                key=key,
                label=label_of(key),
                kind=kind,
                value=_shown(kind, values.get(key)),
                choices=choices,
                help=help_text,
                required=key in required,
                step="1" if prop.get("type") == "integer" else "any",
            )
        )
    return fields


def _number(raw: str, prop: dict) -> int | float | None:
    try:
        if prop.get("type") == "integer":
            return int(raw)
        number = float(raw)
    except ValueError:
        return None
    return int(number) if number.is_integer() else number


def parse_fields(schema: dict, post, prefix: str, label: str, errors: list) -> dict[str, Any]:
    """The values posted for an object schema's fields; unreadable ones are named in `errors`."""
    values: dict[str, Any] = {}
    for key, prop in (schema.get("properties") or {}).items():
        name = f"{prefix}{key}"
        kind, _ = _kind(prop, key)
        where = f"{label} \u203a {label_of(key)}"
        if kind == "checkbox":
            if post.get(name) or post.get(f"{name}__present"):
                values[key] = bool(post.get(name))
            continue
        if kind == "choices":
            picked = post.getlist(name)
            if picked:
                values[key] = picked
            continue
        raw = (post.get(name) or "").strip()
        if kind != "textarea":
            raw = raw.strip()
        if not raw:
            continue
        if kind == "lines":
            values[key] = [line.strip() for line in raw.splitlines() if line.strip()]
        elif kind == "pairs":
            pairs = {}
            for line in raw.splitlines():
                header, colon, value = line.partition(":")
                if not colon or not header.strip():
                    errors.append((where, f"'{line.strip()}' is not of the form Name: value."))
                    continue
                pairs[header.strip()] = value.strip()
            values[key] = pairs
        elif kind == "number":
            number = _number(raw, prop)
            if number is None:
                whole = "a whole number" if prop.get("type") == "integer" else "a number"
                errors.append((where, f"'{raw}' is not {whole}."))
                continue
            values[key] = number
        else:
            values[key] = raw
    return values
