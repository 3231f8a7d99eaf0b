"""The employee spec: one JSON shape for role templates, the hire form's draft and team files.

An employee spec is a dict (see docs in the catalogue's files) with the brief, the SOP, tool
grants (tool, scope, policy), working hours, budgets, duties, starter knowledge and golden
tasks (employees/hiring/golden.py). A team file is a team and a list of employee specs; a role
template is a title and a list of employee specs.

`load_employee` checks everything that can be checked without writing (the tool registry
included) and returns an `EmployeeSpec`; a `SpecError` lists every problem as (field, message)
in words a manager can act on. What needs the database (a handle already taken, the team)
is checked by employees.hiring.services.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError

from employees.hiring.golden import GoldenSpec, check_golden_tasks
from employees.models import BRIEF_FIELDS, ToolPolicy, handle_validator
from employees.validators import (
    validate_cron,
    validate_hex_colour,
    validate_retention,
    validate_sop,
    validate_timezone,
    validate_working_windows,
)
from tasks.mcp.services import split_tool_name
from tasks.tools import ToolScopeError, UnknownToolError, get_tool, validate_scope

TEAM_FORMAT = "aiworkforce.team/1"
TEMPLATE_FORMAT = "aiworkforce.template/1"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_LABELS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
POLICIES = tuple(ToolPolicy.values)
KNOWLEDGE_EXTENSIONS = (".txt", ".md", ".markdown")
# Decimal(10, 4) in the model: at most 999999.9999 dollars.
MAX_BUDGET = Decimal("999999.9999")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
BRIEF_LABELS = {
    "goals": "Goals",
    "tone": "Tone",
    "constraints": "Constraints",
    "success_criteria": "Success criteria",
    "escalation_rules": "Escalation rules",
}


class SpecError(Exception):
    """A spec that cannot be hired: every problem as (field, message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{where}: {message}" if where else message for where, message in errors)
        )

    def prefixed(self, prefix: str) -> SpecError:
        return SpecError(
            [(f"{prefix} \u203a {where}" if where else prefix, m) for where, m in self.errors]
        )


@dataclass(frozen=True)
class GrantSpec:
    tool: str
    scope: dict
    policy: str


@dataclass(frozen=True)
class DutySpec:
    name: str
    cron: str
    timezone: str
    instructions: str
    enabled: bool = True


@dataclass(frozen=True)
class DocumentSpec:
    title: str
    content: bytes


@dataclass(frozen=True)
class FactSpec:
    text: str
    pinned: bool = False


@dataclass
class EmployeeSpec:
    name: str
    handle: str
    role_title: str
    job_description: str
    brief: dict[str, str]
    sop: list[dict]
    grants: list[GrantSpec]
    timezone: str
    always_on: bool
    windows: list[tuple[int, time, time]]
    max_cost_per_task: Decimal
    max_cost_per_day: Decimal
    max_tokens_per_turn: int
    duties: list[DutySpec]
    documents: list[DocumentSpec]
    facts: list[FactSpec] = field(default_factory=list)
    avatar_colour: str = "#4f46e5"
    is_manager: bool = False
    reports_to: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    memory_retention_days: dict[str, int] = field(default_factory=dict)
    golden_tasks: list[GoldenSpec] = field(default_factory=list)


@dataclass
class TeamSpec:
    name: str
    description: str
    accepts_requests_from_other_teams: bool
    employees: list[EmployeeSpec]
    documents: list[DocumentSpec]
    facts: list[FactSpec]


@dataclass
class Template:
    slug: str
    title: str
    summary: str
    employees: list[EmployeeSpec]
    raw: dict  # the employee specs as written, to start the hire form from


# --- small checks, each appending (field, message) to `errors` --------------------------------


def _messages(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _text(data: dict, key: str, label: str, errors: list, *, required=False, max_length=0) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        errors.append((label, "must be text."))
        return ""
    value = value.strip()
    if required and not value:
        errors.append((label, "is required."))
    if max_length and len(value) > max_length:
        errors.append((label, f"is {len(value)} characters long; at most {max_length} fit."))
    return value


def _object(data: Any, label: str, errors: list) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.append((label, "must be an object of named fields."))
        return {}
    return data


def _list(data: Any, label: str, errors: list) -> list:
    if data is None:
        return []
    if not isinstance(data, list):
        errors.append((label, "must be a list."))
        return []
    return data


def parse_time(value: Any) -> time | None:
    if isinstance(value, str) and _TIME.match(value.strip()):
        hours, minutes = value.strip().split(":")
        return time(int(hours), int(minutes))
    return None


def parse_money(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        amount = Decimal(str(value).strip().lstrip("$"))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def tool_problem(name: str) -> str:
    """Why a tool cannot be granted here ("" when it can)."""
    try:
        get_tool(name)
    except UnknownToolError as exc:
        parts = split_tool_name(name)
        if parts is not None:
            return (
                f"{name} is a tool of the MCP server '{parts[0]}', which is not registered here "
                f"(or does not offer '{parts[1]}'): register it with ./workforce manage mcp add "
                f"{parts[0]} … and list its tools first."
            )
        return str(exc)
    return ""


# --- the sections of an employee spec ----------------------------------------------------------


def check_identity(data: dict, errors: list) -> dict:
    values = {
        "name": _text(data, "name", "Name", errors, required=True, max_length=100),
        "handle": _text(data, "handle", "Handle", errors, required=True, max_length=40).lstrip("@"),
        "role_title": _text(
            data, "role_title", "Role title", errors, required=True, max_length=100
        ),
        "job_description": _text(data, "job_description", "Job description", errors, required=True),
        "avatar_colour": _text(data, "avatar_colour", "Avatar colour", errors) or "#4f46e5",
        "reports_to": _text(data, "reports_to", "Reports to", errors).lstrip("@"),
    }
    if values["handle"]:
        try:
            handle_validator(values["handle"])
        except ValidationError as exc:
            errors.append(("Handle", _messages(exc)))
    try:
        validate_hex_colour(values["avatar_colour"])
    except ValidationError as exc:
        errors.append(("Avatar colour", _messages(exc)))
    is_manager = data.get("is_manager", False)
    if not isinstance(is_manager, bool):
        errors.append(("Manager employee", "must be true or false."))
    values["is_manager"] = is_manager is True
    brief = _object(data.get("brief"), "Brief", errors)
    values["brief"] = {
        name: _text(brief, name, BRIEF_LABELS[name], errors) for name in BRIEF_FIELDS
    }
    for unknown in sorted(set(brief) - set(BRIEF_FIELDS)):
        errors.append(("Brief", f"has no field '{unknown}'; use {', '.join(BRIEF_FIELDS)}."))
    return values


def check_tools(data: dict, errors: list) -> list[GrantSpec]:
    grants: list[GrantSpec] = []
    seen: set[str] = set()
    for number, item in enumerate(_list(data.get("tools"), "Tools", errors), start=1):
        where = f"Tool {number}"
        item = _object(item, where, errors)
        name = _text(item, "tool", where, errors, required=True)
        if not name:
            continue
        where = f"Tool {number} ({name})"
        if name in seen:
            errors.append((where, "is granted twice; keep one grant per tool."))
            continue
        seen.add(name)
        policy = item.get("policy", ToolPolicy.NEEDS_APPROVAL)
        if policy not in POLICIES:
            errors.append(
                (
                    f"{where} \u203a Policy",
                    f"'{policy}' is not a policy; use {', '.join(POLICIES)}.",
                )
            )
        scope = _object(item.get("scope"), f"{where} \u203a Scope", errors)
        problem = tool_problem(name)
        if problem:
            errors.append((where, problem))
            continue
        try:
            validate_scope(name, scope)
        except ToolScopeError as exc:
            errors.append((f"{where} \u203a Scope", str(exc)))
        grants.append(GrantSpec(tool=name, scope=scope, policy=policy))
    return grants


def check_sop(data: dict, granted: set[str], errors: list) -> list[dict]:
    steps = data.get("sop") or []
    try:
        validate_sop(steps)
    except ValidationError as exc:
        errors.append(("SOP", _messages(exc)))
        return []
    for number, step in enumerate(steps, start=1):
        hint = step.get("tool")
        if not hint:
            continue
        name = hint["name"]
        if name not in granted:
            errors.append(
                (
                    f"SOP step {number}",
                    f"uses {name}, which is not among the granted tools: grant it on the Tools "
                    "step or pick another tool for this step.",
                )
            )
            continue
        known = set(get_tool(name).parameters.get("properties", {}))
        for argument in sorted(set(hint.get("arguments") or {}) - known):
            errors.append((f"SOP step {number} \u203a {name}", f"has no argument '{argument}'."))
    return steps


def check_hours(data: dict, errors: list) -> tuple[str, bool, list[tuple[int, time, time]]]:
    hours = _object(data.get("working_hours"), "Working hours", errors)
    tz = _text(hours, "timezone", "Time zone", errors) or "UTC"
    try:
        validate_timezone(tz)
    except ValidationError as exc:
        errors.append(("Time zone", _messages(exc)))
    always_on = hours.get("always_on", True)
    if not isinstance(always_on, bool):
        errors.append(("Always on", "must be true or false."))
        always_on = True
    windows: list[tuple[int, time, time]] = []
    for number, item in enumerate(_list(hours.get("windows"), "Working windows", errors), 1):
        where = f"Working window {number}"
        item = _object(item, where, errors)
        days = _list(item.get("days"), f"{where} \u203a Days", errors)
        bad = [day for day in days if day not in DAYS]
        if bad or not days:
            errors.append(
                (f"{where} \u203a Days", "pick at least one day (" + ", ".join(DAYS) + ").")
            )
            continue
        start, end = parse_time(item.get("from")), parse_time(item.get("to"))
        if start is None or end is None:
            errors.append((f"{where} \u203a Hours", "give 'from' and 'to' as HH:MM, e.g. 09:00."))
            continue
        windows.extend((DAYS.index(day), start, end) for day in dict.fromkeys(days))
    if not always_on:
        if not windows and not any(where.startswith("Working window") for where, _ in errors):
            errors.append(
                ("Working hours", "an employee that is not always on needs at least one window.")
            )
        try:
            validate_working_windows(windows)
        except ValidationError as exc:
            errors.extend(("Working hours", message) for message in exc.messages)
    return tz, always_on, windows if not always_on else []


def check_budgets(data: dict, errors: list) -> tuple[Decimal, Decimal, int]:
    budgets = _object(data.get("budgets"), "Budgets", errors)
    amounts = []
    for key, label, default in (
        ("max_cost_per_task", "Most a task may cost", "0.50"),
        ("max_cost_per_day", "Most a day may cost", "5.00"),
    ):
        raw = budgets.get(key, default)
        amount = parse_money(raw)
        if amount is None:
            errors.append((label, f"'{raw}' is not an amount of US dollars, e.g. 0.50."))
        elif amount < 0:
            errors.append((label, "cannot be negative."))
        elif amount > MAX_BUDGET:
            errors.append((label, f"is more than the largest budget, ${MAX_BUDGET}."))
        elif amount.as_tuple().exponent < -4:
            errors.append((label, "has more than four decimal places."))
        amounts.append(amount)
    per_task, per_day = amounts
    if per_task is not None and per_day is not None and per_task > per_day:
        errors.append(
            (
                "Most a task may cost",
                f"${per_task} is more than the daily ceiling of ${per_day}: one task could "
                "never spend it. Lower it, or raise the daily ceiling.",
            )
        )
    tokens = budgets.get("max_tokens_per_turn", 4000)
    if isinstance(tokens, str) and tokens.strip().isdigit():
        tokens = int(tokens)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        errors.append(("Tokens per model call", "must be a whole number of at least 1."))
        tokens = 4000
    return per_task or Decimal(0), per_day or Decimal(0), tokens


def check_duties(data: dict, default_tz: str, errors: list) -> list[DutySpec]:
    duties = []
    for number, item in enumerate(_list(data.get("duties"), "Duties", errors), start=1):
        where = f"Duty {number}"
        item = _object(item, where, errors)
        name = _text(item, "name", f"{where} \u203a Name", errors, required=True, max_length=100)
        if name:
            where = f"Duty {number} ({name})"
        cron = _text(item, "cron", f"{where} \u203a Schedule", errors, required=True)
        if cron:
            try:
                validate_cron(cron)
            except ValidationError as exc:
                errors.append((f"{where} \u203a Schedule", _messages(exc)))
        tz = _text(item, "timezone", f"{where} \u203a Time zone", errors) or default_tz
        try:
            validate_timezone(tz)
        except ValidationError as exc:
            errors.append((f"{where} \u203a Time zone", _messages(exc)))
        instructions = _text(
            item, "instructions", f"{where} \u203a Instructions", errors, required=True
        )
        enabled = item.get("enabled", True) is not False
        duties.append(
            DutySpec(name=name, cron=cron, timezone=tz, instructions=instructions, enabled=enabled)
        )
    return duties


def check_documents(items: Any, errors: list, label: str = "Knowledge") -> list[DocumentSpec]:
    documents = []
    titles: set[str] = set()
    for number, item in enumerate(_list(items, label, errors), start=1):
        where = f"{label} document {number}"
        item = _object(item, where, errors)
        title = _text(item, "title", f"{where} \u203a Title", errors, required=True, max_length=200)
        if not title:
            continue
        where = f"{label} document {number} ({title})"
        if title in titles:
            errors.append((where, "has the same title as another document; titles are unique."))
        titles.add(title)
        if "content_base64" in item:
            try:
                content = base64.b64decode(item["content_base64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                errors.append((where, "content_base64 is not valid base64."))
                continue
        else:
            if not title.lower().endswith(KNOWLEDGE_EXTENSIONS):
                errors.append(
                    (
                        f"{where} \u203a Title",
                        "must end in .md, .markdown or .txt (the text is Markdown or plain text).",
                    )
                )
            text = _text(item, "text", f"{where} \u203a Text", errors, required=True)
            content = text.encode()
        documents.append(DocumentSpec(title=title, content=content))
    return documents


def check_facts(items: Any, errors: list, label: str = "Facts") -> list[FactSpec]:
    facts = []
    for number, item in enumerate(_list(items, label, errors), start=1):
        item = (
            {"text": item} if isinstance(item, str) else _object(item, f"{label} {number}", errors)
        )
        text = _text(item, "text", f"{label} {number}", errors, required=True, max_length=4000)
        if text:
            facts.append(FactSpec(text=text, pinned=item.get("pinned") is True))
    return facts


def _check_model(data: dict, errors: list) -> tuple[dict, dict]:
    model = _object(data.get("model"), "Model", errors)
    allowed = {"model_name", "model_base_url", "temperature", "context_window"}
    for unknown in sorted(set(model) - allowed):
        errors.append(("Model", f"has no setting '{unknown}'; use {', '.join(sorted(allowed))}."))
    retention = data.get("memory_retention_days") or {}
    try:
        validate_retention(retention)
    except ValidationError as exc:
        errors.append(("Memory retention", _messages(exc)))
    return {key: model[key] for key in allowed & set(model)}, retention


def load_employee(data: Any) -> EmployeeSpec:
    """Check an employee spec whole; raise SpecError listing every problem."""
    errors: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        raise SpecError([("", "An employee spec must be an object of named fields.")])
    identity = check_identity(data, errors)
    grants = check_tools(data, errors)
    sop = check_sop(data, {grant.tool for grant in grants}, errors)
    tz, always_on, windows = check_hours(data, errors)
    per_task, per_day, tokens = check_budgets(data, errors)
    duties = check_duties(data, tz, errors)
    documents = check_documents(data.get("knowledge"), errors)
    facts = check_facts(data.get("facts"), errors)
    model, retention = _check_model(data, errors)
    golden = check_golden_tasks(data.get("golden_tasks"), {g.tool for g in grants}, errors)
    if errors:
        raise SpecError(errors)
    return EmployeeSpec(
        **identity,
        sop=sop,
        grants=grants,
        timezone=tz,
        always_on=always_on,
        windows=windows,
        max_cost_per_task=per_task,
        max_cost_per_day=per_day,
        max_tokens_per_turn=tokens,
        duties=duties,
        documents=documents,
        facts=facts,
        model=model,
        memory_retention_days=retention,
        golden_tasks=golden,
    )


def _load_employees(items: Any) -> list[EmployeeSpec]:
    if not isinstance(items, list) or not items:
        raise SpecError([("employees", "must be a list of at least one employee spec.")])
    employees, errors = [], []
    for number, item in enumerate(items, start=1):
        handle = item.get("handle") if isinstance(item, dict) else None
        try:
            employees.append(load_employee(item))
        except SpecError as exc:
            errors.extend(
                exc.prefixed(f"Employee {number}" + (f" (@{handle})" if handle else "")).errors
            )
    handles = [employee.handle for employee in employees]
    for handle in sorted({h for h in handles if handles.count(h) > 1}):
        errors.append(("employees", f"the handle '{handle}' is used twice in this file."))
    if errors:
        raise SpecError(errors)
    return employees


def load_team_file(data: Any) -> TeamSpec:
    """Check a team file (what export_team writes); raise SpecError listing every problem."""
    if not isinstance(data, dict) or data.get("format") != TEAM_FORMAT:
        raise SpecError(
            [("format", f'This is not a team file: it must say "format": "{TEAM_FORMAT}".')]
        )
    errors: list[tuple[str, str]] = []
    team = _object(data.get("team"), "team", errors)
    name = _text(team, "name", "team \u203a name", errors, required=True, max_length=100)
    description = _text(team, "description", "team \u203a description", errors)
    documents = check_documents(data.get("knowledge"), errors, label="Team knowledge")
    facts = check_facts(data.get("facts"), errors, label="Team fact")
    try:
        employees = _load_employees(data.get("employees"))
    except SpecError as exc:
        errors.extend(exc.errors)
        employees = []
    if errors:
        raise SpecError(errors)
    return TeamSpec(
        name=name,
        description=description,
        accepts_requests_from_other_teams=team.get("accepts_requests_from_other_teams") is True,
        employees=employees,
        documents=documents,
        facts=facts,
    )


def load_template(data: Any, *, slug: str) -> Template:
    """Check a role template of the catalogue; raise SpecError listing every problem."""
    if not isinstance(data, dict) or data.get("format") != TEMPLATE_FORMAT:
        raise SpecError([("format", f'A role template must say "format": "{TEMPLATE_FORMAT}".')])
    errors: list[tuple[str, str]] = []
    title = _text(data, "title", "title", errors, required=True)
    summary = _text(data, "summary", "summary", errors, required=True)
    try:
        employees = _load_employees(data.get("employees"))
    except SpecError as exc:
        errors.extend(exc.errors)
        employees = []
    if errors:
        raise SpecError(errors)
    return Template(slug=slug, title=title, summary=summary, employees=employees, raw=data)
