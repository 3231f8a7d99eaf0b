"""The profile's plain-English descriptions: tool grants, the SOP, working hours, brief texts.

Pure functions over rows already read (no queries), so the page's query count does not grow
with the number of grants, steps or windows, and each sentence is easy to test on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import groupby
from typing import Any

from employees.models import BRIEF_FIELDS

MCP_PREFIX = "mcp:"
DASH = "\N{EN DASH}"
DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
POLICY_WORDS = {
    "auto": "runs automatically",
    "needs_approval": "asks a person first",
    "never": "never (granted, but every call is refused)",
}
BRIEF_LABELS = {
    "goals": "Goals",
    "tone": "Tone",
    "constraints": "Constraints",
    "success_criteria": "Success criteria",
    "escalation_rules": "Escalation rules",
}


# --- tool grants ---------------------------------------------------------------------------------


def _join(words: list[str], last: str = "or") -> str:
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def _domain(pattern: str) -> str:
    if pattern.startswith("*."):
        return f"@…{pattern[1:]} (any subdomain of {pattern[2:]})"
    return f"@{pattern}"


def _host(pattern: str) -> str:
    if pattern.startswith("*."):
        return f"any host under {pattern[2:]}"
    return pattern


def _bytes(count: int) -> str:
    for unit, size in (("MB", 1_000_000), ("kB", 1_000)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"


def _other_scope(scope: dict[str, Any]) -> str:
    """A scope of a tool this module has no sentence for, as `name: value` pairs."""
    parts = []
    for key, value in scope.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else json.dumps(value)
        parts.append(f"{key.replace('_', ' ')}: {shown}")
    return "; ".join(parts)


def grant_sentence(tool_name: str, scope: dict[str, Any] | None) -> str:
    """What a grant lets the employee do, in one sentence a manager reads at a glance."""
    scope = scope or {}
    if tool_name == "send_email":
        domains = [_domain(d) for d in scope.get("allowed_domains", [])]
        if not domains:
            return "May send e-mail (no address is allowed yet, so every mail is refused)."
        return f"May e-mail only {_join(domains)} addresses."
    if tool_name == "http_request":
        hosts = [_host(h) for h in scope.get("allowed_hosts", [])]
        methods = scope.get("allowed_methods") or ["GET"]
        sentence = f"May make {_join(methods)} requests to {_join(hosts) or 'no host'} only"
        extras = []
        if "timeout_seconds" in scope:
            extras.append(f"gives up after {scope['timeout_seconds']:g} s")
        if "max_response_bytes" in scope:
            extras.append(f"reads at most {_bytes(int(scope['max_response_bytes']))} of an answer")
        return sentence + (f"; {_join(extras, 'and')}." if extras else ".")
    if tool_name == "create_task":
        limit = scope.get("max_per_task")
        cap = f" (at most {limit} per task)" if limit else ""
        return f"May create follow-up tasks for itself{cap}."
    if tool_name == "escalate_to_human":
        return "May hand a decision to a person, with its evidence, options and recommendation."
    if tool_name == "recall":
        return "May search its own and its team's long-term memory."
    if tool_name == "remember":
        if scope.get("allow_team"):
            return "May save memories for itself and share them with its team."
        return "May save memories for itself (not for its team)."
    if tool_name == "delegate":
        sentence = "May hand parts of a task to employees along its collaboration lines"
        handles = [f"@{h}" for h in scope.get("allowed_handles", [])]
        if handles:
            sentence += f", and also to {_join(handles, 'and')}"
        if scope.get("max_children"):
            sentence += f" (at most {scope['max_children']} per task)"
        return sentence + "."
    if tool_name.startswith(MCP_PREFIX) and "/" in tool_name:
        server, _, tool = tool_name[len(MCP_PREFIX) :].partition("/")
        sentence = f"May call the tool {tool} of the MCP server {server}"
        return sentence + (f", with {_other_scope(scope)}." if scope else ".")
    other = _other_scope(scope)
    return f"May use {tool_name}" + (f", with {other}." if other else ".")


def first_sentence(text: str, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    end = text.find(". ")
    sentence = text[: end + 1] if 0 <= end < limit else text
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


# --- the SOP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SopStep:
    number: int
    text: str
    tool: str
    arguments: list[tuple[str, str]]
    when: list[str]


def _argument(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False)


def sop_steps(sop: Any) -> list[SopStep]:
    """The SOP as numbered steps with their tool hint in words (never raw JSON)."""
    steps = []
    for number, step in enumerate(sop if isinstance(sop, list) else [], start=1):
        if not isinstance(step, dict):
            continue
        hint = step.get("tool") or {}
        arguments = hint.get("arguments") or {}
        steps.append(
            SopStep(
                number=number,
                text=str(step.get("text", "")),
                tool=str(hint.get("name", "")),
                arguments=[(name, _argument(value)) for name, value in arguments.items()],
                when=[str(word) for word in step.get("when") or []],
            )
        )
    return steps


def version_lines(brief: dict[str, Any], sop: Any) -> list[str]:
    """A brief version as lines of text, for a diff a person reads (not a JSON diff)."""
    lines: list[str] = []
    for name in BRIEF_FIELDS:
        lines.append(f"{BRIEF_LABELS[name]}:")
        text = str((brief or {}).get(name) or "").strip()
        lines.extend(f"  {line}" for line in text.splitlines() or ["(empty)"])
    lines.append("SOP:")
    steps = sop_steps(sop)
    for step in steps:
        lines.append(f"  {step.number}. {step.text}")
        if step.when:
            lines.append(f"     only when the task mentions {_join(step.when)}")
        if step.tool:
            arguments = "; ".join(f"{name}: {value}" for name, value in step.arguments)
            lines.append(f"     uses {step.tool}" + (f" ({arguments})" if arguments else ""))
    if not steps:
        lines.append("  (no steps)")
    return lines


# --- working hours ------------------------------------------------------------------------------


def _hm(value: time) -> str:
    return f"{value:%H:%M}"


def hours_lines(windows: list[Any]) -> list[str]:
    """Weekly windows grouped by days with the same hours: 'Mon-Fri 08:00-18:00' (with en dashes)."""
    by_day: dict[int, tuple[tuple[time, time], ...]] = {}
    for window in sorted(windows, key=lambda w: (w.weekday, w.start)):
        by_day[window.weekday] = (*by_day.get(window.weekday, ()), (window.start, window.end))
    lines = []
    days = sorted(by_day)
    # Consecutive days with the same spans form one line.
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1 and by_day[runs[-1][-1]] == by_day[day]:
            runs[-1].append(day)
        else:
            runs.append([day])
    for run in runs:
        label = (
            DAY_NAMES[run[0]] if len(run) == 1 else f"{DAY_NAMES[run[0]]}{DASH}{DAY_NAMES[run[-1]]}"
        )
        spans = ", ".join(f"{_hm(start)}{DASH}{_hm(end)}" for start, end in by_day[run[0]])
        lines.append(f"{label} {spans}")
    return lines


@dataclass(frozen=True)
class HoursNow:
    on_duty: bool
    text: str  # "off hours — resumes Mon 09:00 Europe/Berlin"
    local_now: str  # "Mon 08:30" in the employee's time zone
    change_at: datetime | None  # when that changes (None: never, or always on)


def _spans(windows: list[Any]) -> dict[int, list[tuple[time, time]]]:
    spans: dict[int, list[tuple[time, time]]] = {}
    for weekday, group in groupby(
        sorted(windows, key=lambda w: (w.weekday, w.start)), key=lambda w: w.weekday
    ):
        merged: list[tuple[time, time]] = []
        for window in group:
            if merged and window.start <= merged[-1][1]:  # touching windows are one stretch
                merged[-1] = (merged[-1][0], max(merged[-1][1], window.end))
            else:
                merged.append((window.start, window.end))
        spans[weekday] = merged
    return spans


def _at(day: date, moment: time, tzinfo) -> datetime:
    return datetime.combine(day, moment, tzinfo=tzinfo)


def hours_now(*, always_on: bool, tz, tz_name: str, windows: list[Any], now: datetime) -> HoursNow:
    """Whether the employee is on duty at `now` and when that changes, in its own time zone.

    Same rule as Employee.is_on_duty: a window holds from its start (inclusive) to its end.
    """
    local = now.astimezone(tz)
    local_label = f"{DAY_NAMES[local.weekday()]} {local:%H:%M}"
    if always_on:
        return HoursNow(True, "always on — works 24/7", local_label, None)
    spans = _spans(windows)
    if not spans:
        return HoursNow(False, "no working hours set — only urgent tasks run", local_label, None)
    today = local.date()
    for start, end in spans.get(local.weekday(), []):
        if start <= local.time() < end:
            until = _at(today, end, tz)
            return HoursNow(True, f"on duty — until {_hm(end)} {tz_name}", local_label, until)
    for offset in range(8):
        day = today + timedelta(days=offset)
        for start, _end in spans.get(day.weekday(), []):
            if offset or start > local.time():
                begins = _at(day, start, tz)
                when = f"{DAY_NAMES[day.weekday()]} {_hm(start)}"
                if offset == 0:
                    when = f"today {_hm(start)}"
                text = f"off hours — resumes {when} {tz_name}"
                return HoursNow(False, text, local_label, begins)
    return HoursNow(False, "off hours", local_label, None)  # unreachable with any window


def when_text(moment: datetime, tz_name: str) -> str:
    """'Mon 6 Jan 09:00 Europe/Berlin': a time in the zone it is given in."""
    return f"{DAY_NAMES[moment.weekday()]} {moment.day} {moment:%b %H:%M} {tz_name}"
