"""The hire form's draft: an employee spec carried in the form posts, one step at a time.

Nothing is saved until the last step: each post carries the draft (JSON in a hidden field)
and the current step's fields; `read_step` folds the fields into the draft, `apply_op` adds,
removes or moves a row, and `step_errors` checks the step with the spec's own checks.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from employees.hiring.fields import fields_for, parse_fields
from employees.hiring.spec import (
    BRIEF_LABELS,
    DAY_LABELS,
    DAYS,
    check_budgets,
    check_documents,
    check_duties,
    check_hours,
    check_identity,
    check_sop,
    check_tools,
    tool_problem,
)
from employees.models import BRIEF_FIELDS, ToolPolicy
from tasks.tools import Risk, UnknownToolError, get_tool

STEPS = [
    ("brief", "Brief"),
    ("tools", "Tools"),
    ("sop", "SOP"),
    ("hours", "Working hours"),
    ("budgets", "Budgets"),
    ("duties", "Duties"),
    ("knowledge", "Knowledge"),
    ("review", "Review"),
]
STEP_NAMES = [name for name, _ in STEPS]
WEEKDAYS = list(DAYS[:5])


def blank_draft() -> dict:
    return {
        "name": "",
        "handle": "",
        "role_title": "",
        "job_description": "",
        "avatar_colour": "#4f46e5",
        "brief": {name: "" for name in BRIEF_FIELDS},
        "sop": [],
        "tools": [{"tool": "escalate_to_human", "policy": ToolPolicy.AUTO, "scope": {}}],
        "working_hours": {
            "timezone": "UTC",
            "always_on": True,
            "windows": [{"days": WEEKDAYS, "from": "09:00", "to": "17:00"}],
        },
        "budgets": {
            "max_cost_per_task": "0.50",
            "max_cost_per_day": "5.00",
            "max_tokens_per_turn": 4000,
        },
        "duties": [],
        "knowledge": [],
    }


def draft_from_spec(spec: dict) -> dict:
    draft = {**blank_draft(), **copy.deepcopy(spec)}
    hours = draft["working_hours"]
    if not hours.get("windows"):
        hours["windows"] = [{"days": WEEKDAYS, "from": "09:00", "to": "17:00"}]
    return draft


def draft_from_post(post) -> dict:
    try:
        draft = json.loads(post.get("draft") or "{}")
    except ValueError:
        draft = {}
    return draft_from_spec(draft if isinstance(draft, dict) else {})


def tool_of(name: str):
    try:
        return get_tool(name)
    except UnknownToolError:
        return None


def default_policy(name: str) -> str:
    tool = tool_of(name)
    if tool is None or tool.default_risk != Risk.LOW:
        return ToolPolicy.NEEDS_APPROVAL
    return ToolPolicy.AUTO


# --- reading a step's fields into the draft ----------------------------------------------------


def _rows(post, prefix: str) -> range:
    try:
        return range(min(int(post.get(f"{prefix}-count") or 0), 100))
    except ValueError:
        return range(0)


def _read_brief(post, draft: dict, errors: list) -> None:
    for key in ("name", "handle", "role_title", "job_description", "avatar_colour", "reports_to"):
        draft[key] = (post.get(key) or "").strip()
    draft["is_manager"] = bool(post.get("is_manager"))
    draft["brief"] = {key: (post.get(key) or "").strip() for key in BRIEF_FIELDS}
    draft["team"] = (post.get("team") or "").strip()


def _read_tools(post, draft: dict, errors: list) -> None:
    tools = []
    for i in _rows(post, "tool"):
        name = (post.get(f"tool-{i}-name") or "").strip()
        tool = tool_of(name)
        scope = {}
        if tool is not None:
            label = f"Tool {i + 1} ({name}) \u203a Scope"
            scope = parse_fields(tool.scope_schema, post, f"tool-{i}-scope-", label, errors)
        policy = post.get(f"tool-{i}-policy") or default_policy(name)
        tools.append({"tool": name, "policy": policy, "scope": scope})
    draft["tools"] = tools


def _read_sop(post, draft: dict, errors: list) -> None:
    steps = []
    for i in _rows(post, "sop"):
        step: dict[str, Any] = {"text": (post.get(f"sop-{i}-text") or "").strip()}
        when = [w.strip() for w in (post.get(f"sop-{i}-when") or "").split(",") if w.strip()]
        if when:
            step["when"] = when
        name = (post.get(f"sop-{i}-tool") or "").strip()
        tool = tool_of(name) if name else None
        if tool is not None:
            arguments = parse_fields(
                tool.parameters, post, f"sop-{i}-arg-", f"SOP step {i + 1} \u203a {name}", errors
            )
            step["tool"] = {"name": name, "arguments": arguments}
        steps.append(step)
    draft["sop"] = steps


def _read_hours(post, draft: dict, errors: list) -> None:
    windows = []
    for i in _rows(post, "window"):
        days = [day for day in post.getlist(f"window-{i}-day") if day in DAYS]
        windows.append(
            {
                "days": days,
                "from": (post.get(f"window-{i}-from") or "").strip()[:5],
                "to": (post.get(f"window-{i}-to") or "").strip()[:5],
            }
        )
    draft["working_hours"] = {
        "timezone": (post.get("timezone") or "").strip() or "UTC",
        "always_on": bool(post.get("always_on")),
        "windows": windows,
    }


def _read_budgets(post, draft: dict, errors: list) -> None:
    draft["budgets"] = {
        key: (post.get(key) or "").strip()
        for key in ("max_cost_per_task", "max_cost_per_day", "max_tokens_per_turn")
    }


def _read_duties(post, draft: dict, errors: list) -> None:
    draft["duties"] = [
        {
            "name": (post.get(f"duty-{i}-name") or "").strip(),
            "cron": " ".join((post.get(f"duty-{i}-cron") or "").split()),
            "timezone": (post.get(f"duty-{i}-timezone") or "").strip(),
            "instructions": (post.get(f"duty-{i}-instructions") or "").strip(),
            "enabled": bool(post.get(f"duty-{i}-enabled")),
        }
        for i in _rows(post, "duty")
    ]


def _read_knowledge(post, draft: dict, errors: list) -> None:
    documents = []
    for i in _rows(post, "doc"):
        title = (post.get(f"doc-{i}-title") or "").strip()
        if "content_base64" in (draft_doc := _existing_doc(draft, title)):
            documents.append(draft_doc)  # a PDF from a file: kept as it came
            continue
        documents.append({"title": title, "text": post.get(f"doc-{i}-text") or ""})
    draft["knowledge"] = documents


def _existing_doc(draft: dict, title: str) -> dict:
    return next((d for d in draft.get("knowledge") or [] if d.get("title") == title), {})


def _read_review(post, draft: dict, errors: list) -> None:
    draft["start_as"] = post.get("start_as") or "shadow"


READERS = {
    "brief": _read_brief,
    "tools": _read_tools,
    "sop": _read_sop,
    "hours": _read_hours,
    "budgets": _read_budgets,
    "duties": _read_duties,
    "knowledge": _read_knowledge,
    "review": _read_review,
}


def read_step(step: str, post, draft: dict) -> list[tuple[str, str]]:
    """Fold the step's posted fields into the draft; fields that could not be read are errors."""
    errors: list[tuple[str, str]] = []
    if step in READERS:
        READERS[step](post, draft, errors)
    return errors


# --- adding, removing and moving rows ----------------------------------------------------------

LISTS = {
    "tool": "tools",
    "sop": "sop",
    "window": "working_hours.windows",
    "duty": "duties",
    "doc": "knowledge",
    "golden": "golden_tasks",  # they come with a template; the review step can remove one
}


def _list_of(draft: dict, path: str) -> list:
    holder = draft
    *parents, last = path.split(".")
    for part in parents:
        holder = holder.setdefault(part, {})
    return holder.setdefault(last, [])


def _new_row(kind: str, post, draft: dict) -> dict | None:
    if kind == "tool":
        name = (post.get("new_tool") or "").strip()
        if not name or tool_of(name) is None:
            return None
        return {"tool": name, "policy": default_policy(name), "scope": {}}
    if kind == "sop":
        return {"text": ""}
    if kind == "window":
        return {"days": WEEKDAYS, "from": "09:00", "to": "17:00"}
    if kind == "golden":
        return None  # written in a template or from a finished task, not in this form
    if kind == "duty":
        return {
            "name": "",
            "cron": "0 9 * * 1-5",
            "timezone": "",
            "instructions": "",
            "enabled": True,
        }
    return {"title": "notes.md", "text": ""}


def apply_op(op: str, post, draft: dict) -> None:
    """`add:sop`, `remove:sop:2`, `up:sop:2`, `down:sop:2` (rows counted from 0)."""
    verb, _, rest = op.partition(":")
    kind, _, index = rest.partition(":")
    if kind not in LISTS:
        return
    rows = _list_of(draft, LISTS[kind])
    if verb == "add":
        row = _new_row(kind, post, draft)
        if row is not None and not (
            kind == "tool" and any(r.get("tool") == row["tool"] for r in rows)
        ):
            rows.append(row)
        return
    try:
        i = int(index)
    except ValueError:
        return
    if not 0 <= i < len(rows):
        return
    if verb == "remove":
        rows.pop(i)
    elif verb == "up" and i > 0:
        rows[i - 1], rows[i] = rows[i], rows[i - 1]
    elif verb == "down" and i < len(rows) - 1:
        rows[i + 1], rows[i] = rows[i], rows[i + 1]


# --- checking a step ---------------------------------------------------------------------------


def step_errors(step: str, draft: dict) -> list[tuple[str, str]]:
    """What is wrong with this step of the draft (what needs the database is checked by the view)."""
    errors: list[tuple[str, str]] = []
    if step == "brief":
        check_identity(draft, errors)
    elif step == "tools":
        for number, row in enumerate(draft.get("tools") or [], start=1):
            if not row.get("tool"):
                errors.append((f"Tool {number}", "pick a tool or remove the row."))
        check_tools(draft, errors)
    elif step == "sop":
        for number, row in enumerate(draft.get("sop") or [], start=1):
            if not (row.get("text") or "").strip():
                errors.append(
                    (f"SOP step {number} \u203a What to do", "describe the step in a few words.")
                )
        if not errors:
            check_sop(draft, {row.get("tool") for row in draft.get("tools") or []}, errors)
    elif step == "hours":
        check_hours(draft, errors)
    elif step == "budgets":
        check_budgets(draft, errors)
    elif step == "duties":
        tz = (draft.get("working_hours") or {}).get("timezone") or "UTC"
        check_duties(draft, tz, errors)
    elif step == "knowledge":
        check_documents(draft.get("knowledge"), errors)
    return errors


# --- what the templates show --------------------------------------------------------------------


def tool_rows(draft: dict, errors: list) -> list[dict]:
    rows = []
    for i, row in enumerate(draft.get("tools") or []):
        tool = tool_of(row.get("tool", ""))
        prefix = f"Tool {i + 1}"
        rows.append(
            {
                "index": i,
                "name": row.get("tool", ""),
                "tool": tool,
                "problem": tool_problem(row["tool"]) if row.get("tool") and tool is None else "",
                "policy": row.get("policy") or ToolPolicy.NEEDS_APPROVAL,
                "fields": fields_for(tool.scope_schema, row.get("scope") or {}, f"tool-{i}-scope-")
                if tool
                else [],
                "errors": [(w, m) for w, m in errors if w == prefix or w.startswith(prefix + " ")],
            }
        )
    return rows


def sop_rows(draft: dict, errors: list) -> list[dict]:
    rows = []
    steps = draft.get("sop") or []
    for i, step in enumerate(steps):
        hint = step.get("tool") or {}
        tool = tool_of(hint.get("name", "")) if hint else None
        prefix = f"SOP step {i + 1}"
        fields = (
            fields_for(tool.parameters, hint.get("arguments") or {}, f"sop-{i}-arg-")
            if tool
            else []
        )
        rows.append(
            {
                "index": i,
                "number": i + 1,
                "last": i == len(steps) - 1,
                "text": step.get("text", ""),
                "when": ", ".join(step.get("when") or []),
                "tool_name": hint.get("name", ""),
                "fields": fields,
                "optional": [f.label.lower() for f in fields if not f.required],
                "optional_filled": any(f.value for f in fields if not f.required),
                "errors": [(w, m) for w, m in errors if w == prefix or w.startswith(prefix + " ")],
            }
        )
    return rows


def window_rows(draft: dict) -> list[dict]:
    return [
        {
            "index": i,
            "days": [
                (day, DAY_LABELS[n][:3], day in (w.get("days") or [])) for n, day in enumerate(DAYS)
            ],
            "from": w.get("from", ""),
            "to": w.get("to", ""),
        }
        for i, w in enumerate((draft.get("working_hours") or {}).get("windows") or [])
    ]


def review(draft: dict) -> dict:
    """The draft in words, for the last step."""
    hours = draft.get("working_hours") or {}
    windows = []
    for w in hours.get("windows") or []:
        days = ", ".join(DAY_LABELS[DAYS.index(d)][:3] for d in w.get("days") or [] if d in DAYS)
        windows.append(f"{days} {w.get('from')}\u2013{w.get('to')}")
    return {
        "brief": [
            (BRIEF_LABELS[key], (draft.get("brief") or {}).get(key, "")) for key in BRIEF_FIELDS
        ],
        "hours": "Always on" if hours.get("always_on") else "; ".join(windows),
        "timezone": hours.get("timezone") or "UTC",
    }
