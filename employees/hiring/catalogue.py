"""The catalogue of role templates shipped as files in employees/hiring/catalogue/*.json."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from employees.hiring.spec import SpecError, Template, load_template

CATALOGUE_DIR = Path(__file__).resolve().parent / "catalogue"


def template_paths() -> list[Path]:
    return sorted(CATALOGUE_DIR.glob("*.json"))


def read_template(path: Path) -> Template:
    """One template file, checked; SpecError names the file and every problem in it."""
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise SpecError([(path.name, f"is not valid JSON ({exc}).")]) from None
    try:
        return load_template(data, slug=path.stem)
    except SpecError as exc:
        raise exc.prefixed(path.name) from None


@lru_cache(maxsize=1)
def _catalogue() -> tuple[Template, ...]:
    return tuple(read_template(path) for path in template_paths())


def templates() -> list[Template]:
    """Every role template, in file-name order (read once per process)."""
    return list(_catalogue())


def template(slug: str) -> Template | None:
    return next((t for t in _catalogue() if t.slug == slug), None)
