"""The office floor: every visible desk's live state, read in one SQL statement per refresh.

The floor is polled every few seconds by every manager who has it open, so its cost is paid
all day long. It is one hand-written statement because what it needs is, per employee, its
*current* task (the most pressing unfinished one) and that task's *latest* step: a LATERAL
join with ORDER BY ... LIMIT 1 each, which the ORM cannot express. Correlated Subquery()
annotations would repeat the task lookup once per column (title, status, reason, count) and
the step lookup once per field; the lateral joins do each lookup once, on the tasks' employee
indexes and the steps' (task, seq) index: one index probe per desk.
`./workforce bench office` (1,000 employees, 100,000 tasks, 400,000 steps, a busy 2-core
machine): 22 ms inside PostgreSQL, 13 ms at 1,000,000 tasks (the planner then walks the
(employee, status) index), the refresh's p95 82 ms. The visibility rule is not re-written
here: it is employees.selectors.teams_visible_to's own query, embedded.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time

from django.db import connection

from employees.models import Employee, EmployeeStatus, WorkingWindow
from employees.profile.words import HoursNow, hours_now
from employees.selectors import teams_visible_to
from tasks.models import FINISHED_STATUSES, StepKind, TaskStatus

# The task a desk shows is the most pressing unfinished one: working beats waiting on a
# person, which beats waiting on other employees, which beats waiting in the queue.
TASK_PRECEDENCE = [
    TaskStatus.RUNNING,
    TaskStatus.WAITING_APPROVAL,
    TaskStatus.WAITING_ESCALATION,
    TaskStatus.BUDGET_EXHAUSTED,
    TaskStatus.MODEL_MISCONFIGURED,
    TaskStatus.MODEL_UNAVAILABLE,
    TaskStatus.WAITING_CHILDREN,
    TaskStatus.QUEUED,
    TaskStatus.WAITING_HOURS,
    TaskStatus.PAUSED,
]
OPEN_STATUSES = [status for status in TaskStatus.values if status not in FINISHED_STATUSES]
assert set(TASK_PRECEDENCE) == set(OPEN_STATUSES), "every unfinished status needs a rank"

_RANK = " ".join(f"WHEN '{status}' THEN {rank}" for rank, status in enumerate(TASK_PRECEDENCE))
_OPEN = ", ".join(f"'{status}'" for status in OPEN_STATUSES)

FLOOR_SQL = f"""
SELECT tm.id, tm.name,
       e.id, e.name, e.handle, e.avatar_colour, e.role_title, e.status, e.status_reason,
       e.timezone, e.always_on, ww.windows,
       cur.id, cur.title, cur.status, cur.status_reason, cur.open_tasks,
       st.kind, st.tool, st.tool_status, st.calls
FROM employees_team tm
LEFT JOIN employees_employee e ON e.team_id = tm.id AND e.status <> 'offboarded'
LEFT JOIN LATERAL (
    SELECT t.id, t.title, t.status, t.status_reason, count(*) OVER () AS open_tasks
    FROM tasks_task t
    WHERE t.employee_id = e.id AND t.status IN ({_OPEN})
    ORDER BY CASE t.status {_RANK} END, t.updated_at DESC, t.id DESC
    LIMIT 1
) cur ON true
LEFT JOIN LATERAL (
    SELECT s.kind, s.payload ->> 'name' AS tool, s.payload ->> 'status' AS tool_status,
           jsonb_path_query_array(s.payload, '$.message.tool_calls[*].function.name') AS calls
    FROM tasks_step s
    WHERE s.task_id = cur.id AND cur.status = 'running'
    ORDER BY s.seq DESC
    LIMIT 1
) st ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_array(w.weekday, w.start, w."end") ORDER BY w.weekday, w.start)
           AS windows
    FROM employees_workingwindow w
    WHERE w.employee_id = e.id AND NOT e.always_on
) ww ON true
WHERE tm.id IN ({{visible}})
ORDER BY tm.name, tm.id, e.name, e.id
"""  # noqa: S608 - constants only; the visible teams' query is Django's, with parameters


class DeskState:
    """What a desk can show; the keys are also CSS classes (desk-<key>)."""

    WORKING = "working"
    WAITING_APPROVAL = "waiting_approval"
    ESCALATED = "escalated"
    BUDGET = "budget"
    MODEL = "model"
    DELEGATED = "delegated"
    OFF_HOURS = "off_hours"
    QUEUED = "queued"
    PAUSED = "paused"
    DRAFT = "draft"
    IDLE = "idle"


# Summary wording (plural-agnostic: "3 working", "1 waiting for approval"), in summary order.
SUMMARY_LABELS = {
    DeskState.WORKING: "working",
    DeskState.WAITING_APPROVAL: "waiting for approval",
    DeskState.ESCALATED: "escalated",
    DeskState.BUDGET: "stopped on a budget",
    DeskState.MODEL: "stopped by the model",
    DeskState.DELEGATED: "waiting for a delegated request",
    DeskState.QUEUED: "with work queued",
    DeskState.OFF_HOURS: "off hours",
    DeskState.PAUSED: "paused",
    DeskState.DRAFT: "draft",
    DeskState.IDLE: "idle",
}

_TASK_STATES = {
    TaskStatus.RUNNING: DeskState.WORKING,
    TaskStatus.WAITING_APPROVAL: DeskState.WAITING_APPROVAL,
    TaskStatus.WAITING_ESCALATION: DeskState.ESCALATED,
    TaskStatus.BUDGET_EXHAUSTED: DeskState.BUDGET,
    TaskStatus.MODEL_MISCONFIGURED: DeskState.MODEL,
    TaskStatus.MODEL_UNAVAILABLE: DeskState.MODEL,
    TaskStatus.WAITING_CHILDREN: DeskState.DELEGATED,
}


@dataclass(frozen=True, slots=True)
class Desk:
    """One desk: a value (everything it shows), so equal desks render the same HTML."""

    employee_id: int
    name: str
    handle: str
    avatar_colour: str
    role_title: str
    status: str  # the employee's lifecycle status
    state: str  # a DeskState
    label: str  # the state in words: "Working on #12", "Off hours — resumes Mon 09:00 UTC"
    detail: str = ""  # the current step, the reason for a wait or a pause
    task_id: int | None = None
    task_title: str = ""
    open_tasks: int = 0

    @property
    def is_shadow(self) -> bool:
        return self.status == EmployeeStatus.SHADOW

    @property
    def is_draft(self) -> bool:
        return self.status == EmployeeStatus.DRAFT


@dataclass
class FloorTeam:
    team_id: int
    name: str
    desks: list[Desk] = field(default_factory=list)


@dataclass
class Floor:
    teams: list[FloorTeam]
    counts: Counter

    @property
    def desk_count(self) -> int:
        return sum(len(team.desks) for team in self.teams)

    @property
    def summary(self) -> str:
        """'3 working, 2 waiting for approval, 1 idle' (what the polite live region says)."""
        parts = [
            f"{self.counts[state]} {label}"
            for state, label in SUMMARY_LABELS.items()
            if self.counts[state]
        ]
        return ", ".join(parts) if parts else "No desks"


def office_floor_for(user, *, now: datetime) -> Floor:
    """The desks of the teams `user` may see (not offboarded employees), grouped by team,
    each with its live state: one SQL statement whatever the number of employees."""
    visible_sql, visible_params = (
        teams_visible_to(user).order_by().values("id").query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute(FLOOR_SQL.format(visible=visible_sql), visible_params)
        rows = cursor.fetchall()
    teams: list[FloorTeam] = []
    counts: Counter = Counter()
    for row in rows:
        if not teams or teams[-1].team_id != row[0]:
            teams.append(FloorTeam(team_id=row[0], name=row[1]))
        if row[2] is None:  # a team without (current) employees
            continue
        desk = _desk(row, now)
        counts[desk.state] += 1
        teams[-1].desks.append(desk)
    return Floor(teams=teams, counts=counts)


def _desk(row: tuple, now: datetime) -> Desk:
    (
        _team_id,
        _team_name,
        employee_id,
        name,
        handle,
        colour,
        role_title,
        status,
        status_reason,
        tz,
        always_on,
        windows_json,
        task_id,
        task_title,
        task_status,
        task_reason,
        open_tasks,
        step_kind,
        step_tool,
        step_tool_status,
        step_calls,
    ) = row
    identity = {
        "employee_id": employee_id,
        "name": name,
        "handle": handle,
        "avatar_colour": colour,
        "role_title": role_title,
        "status": status,
        "open_tasks": open_tasks or 0,
    }
    task = {"task_id": task_id, "task_title": task_title or ""}
    if status == EmployeeStatus.DRAFT:
        return Desk(**identity, state=DeskState.DRAFT, label="Draft — activate to start work")
    if status == EmployeeStatus.PAUSED:
        return Desk(
            **identity,
            state=DeskState.PAUSED,
            label="Paused",
            detail=status_reason or "No reason was given.",
        )
    state = _TASK_STATES.get(task_status)
    if state == DeskState.WORKING:
        activity = step_activity(step_kind, step_tool, step_tool_status, step_calls)
        return Desk(
            **identity, **task, state=state, label=f"Working on #{task_id}", detail=activity
        )
    if state is not None:
        return Desk(
            **identity, **task, state=state, label=_WAIT_LABELS[state](task_id), detail=task_reason
        )
    # Most employees are always on: no model instance to build for them (1,000 desks a refresh).
    employee = None if always_on else Employee(timezone=tz, always_on=False)
    windows = _windows(windows_json)
    if employee is not None and not employee.is_on_duty(now, windows=windows):
        return Desk(
            **identity,
            **task,
            state=DeskState.OFF_HOURS,
            label=off_hours_label(employee, now, windows),
            detail=f"#{task_id} waits for working hours" if task_id else "",
        )
    if task_id is not None:
        return Desk(**identity, **task, state=DeskState.QUEUED, label=f"About to start #{task_id}")
    return Desk(**identity, state=DeskState.IDLE, label="Idle")


_WAIT_LABELS = {
    DeskState.WAITING_APPROVAL: lambda pk: f"Waiting for approval on #{pk}",
    DeskState.ESCALATED: lambda pk: f"Escalated #{pk} to a person",
    DeskState.BUDGET: lambda pk: f"Stopped on a budget (#{pk})",
    DeskState.MODEL: lambda pk: f"Stopped by the model (#{pk})",
    DeskState.DELEGATED: lambda pk: f"Waiting for a delegated request (#{pk})",
}


def step_activity(kind: str | None, tool: str | None, tool_status: str | None, calls) -> str:
    """What a running task is doing, from its latest step: 'calling send_email', 'thinking'."""
    if kind is None:
        return "starting"
    if kind == StepKind.LLM_CALL:
        names = json.loads(calls) if isinstance(calls, str) else (calls or [])
        return "calling " + ", ".join(names) if names else "writing the answer"
    if kind == StepKind.TOOL_CALL and tool_status == "started":
        return f"calling {tool}"
    if kind == StepKind.APPROVAL_WAIT and tool:  # approved: the call is being made
        return f"calling {tool}"
    if kind == StepKind.FINAL:
        return "finishing"
    return "thinking"  # a result is in: the model is being asked what to do next


def _windows(raw) -> list[WorkingWindow]:
    if not raw:
        return []
    items = json.loads(raw) if isinstance(raw, str) else raw
    return [
        WorkingWindow(weekday=day, start=time.fromisoformat(start), end=time.fromisoformat(end))
        for day, start, end in items
    ]


def next_window_start(
    employee: Employee, at: datetime, windows: list[WorkingWindow]
) -> datetime | None:
    """When an employee off hours at `at` starts work again (None: no windows at all)."""
    return _hours(employee, at, windows).change_at


def off_hours_label(employee: Employee, at: datetime, windows: list[WorkingWindow]) -> str:
    """'Off hours — resumes Mon 09:00 Europe/Berlin': the profile's and task page's words."""
    text = _hours(employee, at, windows).text
    return text[:1].upper() + text[1:]


def _hours(employee: Employee, at: datetime, windows: list[WorkingWindow]) -> HoursNow:
    return hours_now(
        always_on=False, tz=employee.tzinfo, tz_name=employee.timezone, windows=windows, now=at
    )
