"""The golden tasks of an employee spec: cases an employee hired from it must keep getting right.

    "golden_tasks": [
      {"title": "Password reset question",
       "input": "From: jane@example.com ... how do I reset my password?",
       "expectations": {"calls": [{"tool": "send_email", "arguments": {"to": ["jane@example.com"]}}],
                        "escalates": false, "max_steps": 6}}
    ]

The expectations are exactly what a GoldenTask stores (evaluations/expectations.py checks
them); a case that expects a call of a tool the spec does not grant could never pass, so it is
refused too. Hiring creates one GoldenTask per case (employees.hiring.services.employee_hire).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evaluations.expectations import expectations_problem

MAX_GOLDEN_TASKS = 50
_KEYS = {"title", "input", "expectations"}


@dataclass(frozen=True)
class GoldenSpec:
    title: str
    input: str
    expectations: dict


def check_golden_tasks(items: Any, granted: set[str], errors: list) -> list[GoldenSpec]:
    """Every golden task of a spec, checked; each problem appended as (field, message)."""
    if items is None:
        return []
    if not isinstance(items, list):
        errors.append(("Golden tasks", "must be a list."))
        return []
    if len(items) > MAX_GOLDEN_TASKS:
        errors.append(("Golden tasks", f"{len(items)} given; at most {MAX_GOLDEN_TASKS} fit."))
        return []
    cases = []
    for number, item in enumerate(items, start=1):
        where = f"Golden task {number}"
        if not isinstance(item, dict):
            errors.append((where, "must be an object with a title, an input and expectations."))
            continue
        title = item.get("title") if isinstance(item.get("title"), str) else ""
        if title.strip():
            where = f"Golden task {number} ({title.strip()[:60]})"
        before = len(errors)
        for unknown in sorted(set(item) - _KEYS):
            errors.append((where, f"has no field '{unknown}'; use title, input, expectations."))
        if not isinstance(item.get("title", ""), str) or len(title.strip()) > 200:
            errors.append((f"{where} \u203a Title", "must be text of at most 200 characters."))
        text = item.get("input")
        if not isinstance(text, str) or not text.strip():
            errors.append((f"{where} \u203a Input", "is required: the task the employee gets."))
        expectations = item.get("expectations")
        problem = expectations_problem(expectations)
        if problem:
            errors.append((f"{where} \u203a Expectations", problem))
        else:
            for call in expectations.get("calls", []):
                if call["tool"] not in granted:
                    errors.append(
                        (
                            f"{where} \u203a Expectations",
                            f"expects a call of {call['tool']}, which is not among the granted "
                            "tools: grant it, or remove this golden task.",
                        )
                    )
        if len(errors) == before:
            cases.append(GoldenSpec(title=title.strip(), input=text, expectations=expectations))
    return cases
