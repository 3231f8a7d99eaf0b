"""Text PostgreSQL can store: no NUL character and no lone UTF-16 surrogate.

PostgreSQL's text and jsonb types cannot hold U+0000 (psycopg raises DataError), and a string
with an unpaired surrogate (U+D800-U+DFFF) cannot be encoded to UTF-8 at all; either one would
surface as a 500 from the first write. Input from people and from webhook senders is checked
here first and refused with a message that says what to remove, where. Such input is refused,
never silently stripped: what is stored is exactly what was sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.exceptions import ValidationError

_SURROGATE = re.compile("[\ud800-\udfff]")


def _text_problem(text: str) -> str | None:
    at = text.find("\x00")
    if at >= 0:
        return f"the NUL character (U+0000) at character {at + 1}"
    if match := _SURROGATE.search(text):
        return (
            f"an unpaired surrogate (U+{ord(match.group()):04X}) at character {match.start() + 1}"
        )
    return None


def storable_problem(value: Any) -> str | None:
    """What in a string, or in the strings of a JSON-like value (keys too), cannot be stored.

    None when everything can; else e.g. 'the NUL character (U+0000) at character 3 of ["body"]'.
    Walks without recursion, so a deeply nested value cannot exhaust the stack.
    """
    pending: list[tuple[Any, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return f"{problem} of {path}" if path else problem
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (problem := _text_problem(key)):
                    return f"{problem} of a key{f' in {path}' if path else ''}"
                pending.append((child, f"{path}[{json.dumps(key, ensure_ascii=True)}]"))
        elif isinstance(item, list | tuple):
            pending.extend((child, f"{path}[{n}]") for n, child in enumerate(item))
    return None


def validate_storable(value: Any, *, what: str) -> None:
    """Raise ValidationError naming `what` ("The instructions") when it cannot be stored."""
    problem = storable_problem(value)
    if problem:
        raise ValidationError(unstorable_message(what, problem), code="unstorable")


def unstorable_message(what: str, problem: str) -> str:
    return (
        f"{what} cannot be stored because of {problem}. Remove it (it usually comes from text "
        "copied out of a binary file) and try again."
    )


def json_loads_bounded(text: str) -> Any:
    """json.loads that reports nesting too deep to parse as a ValueError, like any bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply (more than about 900 levels)") from None


def storable_copy(value: Any) -> Any:
    """The value with each NUL and lone surrogate replaced by U+FFFD.

    For what the loop records from the model and from tools (a web page fetched as text, the
    model's own arguments): that must be kept, not refused, and the step must still be written.
    """
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {storable_copy(key): storable_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_copy(item) for item in value]
    return value


def storable_dumps(value: Any, **kwargs) -> str:
    """json.dumps of a value whose strings PostgreSQL's jsonb can hold (see storable_copy).

    The escapes jsonb refuses show in the JSON text as \\u0000 or as a \\udXXX escape (also
    used, in pairs, for emoji): only then is the value walked and copied.
    """
    text = json.dumps(value, **kwargs)
    if "\\u0000" in text or "\\ud" in text:
        text = json.dumps(storable_copy(value), **kwargs)
    return text


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
