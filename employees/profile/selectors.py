"""Reads for the employee profile: one bounded set of queries, whatever the employee's history."""

from __future__ import annotations

import difflib
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from croniter import croniter
from django.db.models import Case, Count, IntegerField, QuerySet, Value, When, Window
from django.http import Http404
from django.utils import timezone

from employees.models import (
    BriefVersion,
    Duty,
    Employee,
    EmployeeStatus,
    TeamMembership,
    TeamRole,
    ToolGrant,
)
from employees.profile import words
from employees.selectors import active_brief_version, employees_visible_to
from tasks.models import FINISHED_STATUSES, DailySpend, Step, Task, TaskStatus
from tasks.tools import UnknownToolError, get_tool
from tasks.trace import describe_step

OPEN_TASKS_SHOWN = 10
RECENT_TASKS_SHOWN = 10
VERSIONS_SHOWN = 30
DUTY_RUNS_SHOWN = 3
# Statuses in which duties create tasks (tasks.triggers.duties_materialise).
DUTY_STATUSES = {EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW}


def employee_for_profile(user, handle: str) -> Employee:
    """The employee if the person may see it (a member of its team, or a superuser); else 404."""
    employee = employees_visible_to(user).filter(handle=handle).first()
    if employee is None:
        raise Http404("No such employee.")
    return employee


def may_manage(user, employee: Employee) -> bool:
    """Who may assign work and change the lifecycle: the team's managers, the employee's own
    accountable person, and superusers (the rule approvals and the MCP server use)."""
    if user.is_superuser or employee.manager_id == user.pk:
        return True
    return TeamMembership.objects.filter(
        user=user, team_id=employee.team_id, role=TeamRole.MANAGER
    ).exists()


# --- tools, duties, budget -----------------------------------------------------------------------


@dataclass(frozen=True)
class GrantRow:
    grant: ToolGrant
    sentence: str
    policy: str
    description: str
    is_mcp: bool


def _tool_description(grant: ToolGrant) -> str:
    """What an MCP tool is for, as it was pinned when granted (the page never waits on an MCP
    server); a built-in tool's sentence says it all, unless the tool is no longer known."""
    if grant.tool_name.startswith(words.MCP_PREFIX):
        return words.first_sentence((grant.pinned_definition or {}).get("description", ""))
    try:
        get_tool(grant.tool_name)
    except UnknownToolError:
        return "This tool is no longer known to the system; its calls are refused."
    return ""


def grant_rows(employee: Employee) -> list[GrantRow]:
    return [
        GrantRow(
            grant=grant,
            sentence=words.grant_sentence(grant.tool_name, grant.scope),
            policy=words.POLICY_WORDS.get(grant.policy, grant.get_policy_display()),
            description=_tool_description(grant),
            is_mcp=grant.tool_name.startswith(words.MCP_PREFIX),
        )
        for grant in employee.tool_grants.order_by("tool_name")
    ]


@dataclass(frozen=True)
class DutyRow:
    duty: Duty
    next_runs: list[str]
    note: str


def duty_rows(employee: Employee, now: datetime) -> list[DutyRow]:
    """Each duty with its next run times, computed in the duty's own time zone."""
    rows = []
    acting = employee.status in DUTY_STATUSES
    for duty in employee.duties.order_by("name"):
        runs: list[str] = []
        note = ""
        if not duty.enabled:
            note = "Disabled: it creates no tasks."
        else:
            local = now.astimezone(zoneinfo.ZoneInfo(duty.timezone))
            schedule = croniter(duty.cron, local)
            runs = [
                words.when_text(schedule.get_next(datetime), duty.timezone)
                for _ in range(DUTY_RUNS_SHOWN)
            ]
            if not acting:
                note = f"Creates no tasks while {employee.get_status_display().lower()}."
        rows.append(DutyRow(duty=duty, next_runs=runs, note=note))
    return rows


@dataclass(frozen=True)
class BudgetToday:
    day: Any
    spent: Decimal
    reserved: Decimal
    limit: Decimal
    raised: bool
    percent: int
    level: str  # ok | warn | full


def budget_today(employee: Employee, now: datetime) -> BudgetToday:
    """Today's spend (in the employee's time zone) against its daily ceiling."""
    day = timezone.localdate(now, timezone=employee.tzinfo)
    row = DailySpend.objects.filter(employee=employee, day=day).first()
    spent = row.spent if row else Decimal("0")
    reserved = row.reserved if row else Decimal("0")
    raised = bool(row and row.limit_override is not None)
    limit = row.limit_override if raised else employee.max_cost_per_day
    used = spent + reserved
    if limit > 0:
        percent = min(100, int((used * 100 / limit).to_integral_value()))
    else:
        percent = 100 if used else 0
    level = "full" if percent >= 100 or limit <= 0 else "warn" if percent >= 75 else "ok"
    return BudgetToday(day, spent, reserved, limit, raised, percent, level)


# --- work ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenTask:
    task: Task
    step: str


@dataclass
class WorkNow:
    tasks: list[OpenTask] = field(default_factory=list)
    total: int = 0


def work_now(employee: Employee) -> WorkNow:
    """Unfinished tasks, running first, each with the step it is at (two queries in all)."""
    open_tasks = Task.objects.filter(employee=employee).exclude(status__in=FINISHED_STATUSES)
    running_first = Case(
        When(status=TaskStatus.RUNNING, then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    # The window count is over all open tasks, before the LIMIT: no second query for the total.
    shown = list(
        open_tasks.defer("input", "result")
        .annotate(open_total=Window(Count("pk")))
        .order_by(running_first, "-created_at")[:OPEN_TASKS_SHOWN]
    )
    total = shown[0].open_total if shown else 0
    latest = {
        step.task_id: step
        for step in Step.objects.filter(task__in=[task.pk for task in shown])
        .order_by("task_id", "-seq")
        .distinct("task_id")
    }
    return WorkNow(
        tasks=[
            OpenTask(
                task=task,
                step=describe_step(latest[task.pk]) if task.pk in latest else "Not started yet",
            )
            for task in shown
        ],
        total=total,
    )


def recent_tasks(employee: Employee) -> list[Task]:
    return list(
        Task.objects.filter(employee=employee, status__in=FINISHED_STATUSES)
        .defer("input", "result")
        .order_by("-created_at")[:RECENT_TASKS_SHOWN]
    )


# --- brief versions ------------------------------------------------------------------------------


def brief_versions(employee: Employee) -> QuerySet[BriefVersion]:
    return employee.brief_versions.select_related("author").order_by("-number")


class BriefDiffError(ValueError):
    """Two versions that cannot be compared, with a reason for the person who asked."""


@dataclass(frozen=True)
class DiffLine:
    kind: str  # added | removed | same | hunk
    text: str


@dataclass(frozen=True)
class BriefDiff:
    old: BriefVersion
    new: BriefVersion
    lines: list[DiffLine]

    @property
    def changed(self) -> bool:
        return any(line.kind in ("added", "removed") for line in self.lines)


def _number(raw: Any, label: str) -> int:
    text = str(raw or "").strip().lstrip("v")
    if not text.isascii() or not text.isdigit():
        raise BriefDiffError(f"Choose the {label} version by its number (e.g. 2).")
    return int(text)


def diff_versions(old: BriefVersion, new: BriefVersion) -> BriefDiff:
    """What changed between two versions, line by line, as a person reads the brief."""
    lines = []
    for line in difflib.unified_diff(
        words.version_lines(old.brief, old.sop),
        words.version_lines(new.brief, new.sop),
        lineterm="",
        n=2,
    ):
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            lines.append(DiffLine("hunk", "…"))
        elif line.startswith("+"):
            lines.append(DiffLine("added", line[1:]))
        elif line.startswith("-"):
            lines.append(DiffLine("removed", line[1:]))
        else:
            lines.append(DiffLine("same", line[1:]))
    return BriefDiff(old=old, new=new, lines=lines)


def brief_diff(employee: Employee, old: Any, new: Any) -> BriefDiff:
    """Compare two of the employee's brief versions named by number; BriefDiffError otherwise."""
    old_number, new_number = _number(old, "first"), _number(new, "second")
    if old_number == new_number:
        raise BriefDiffError("Choose two different versions to compare.")
    found = {
        v.number: v for v in brief_versions(employee).filter(number__in=[old_number, new_number])
    }
    missing = [n for n in (old_number, new_number) if n not in found]
    if missing:
        count = employee.brief_versions.count()
        known = f"versions go from 1 to {count}" if count else "it has no versions yet"
        raise BriefDiffError(f"{employee.name}'s brief has no version {missing[0]}: {known}.")
    first, second = sorted((found[old_number], found[new_number]), key=lambda v: v.number)
    return diff_versions(first, second)


# --- the page ------------------------------------------------------------------------------------


def profile_context(employee: Employee, *, user, now: datetime | None = None) -> dict[str, Any]:
    """Everything the profile page shows, read in a fixed number of queries."""
    now = now or timezone.now()
    windows = list(employee.working_windows.all())
    versions = list(brief_versions(employee)[:VERSIONS_SHOWN])
    return {
        "employee": employee,
        "can_manage": may_manage(user, employee),
        "hours": words.hours_now(
            always_on=employee.always_on,
            tz=employee.tzinfo,
            tz_name=employee.timezone,
            windows=windows,
            now=now,
        ),
        "hours_lines": words.hours_lines(windows),
        "brief_rows": [(words.BRIEF_LABELS[name], value) for name, value in employee.brief.items()],
        "sop": words.sop_steps(employee.sop),
        "grants": grant_rows(employee),
        "duties": duty_rows(employee, now),
        "budget": budget_today(employee, now),
        "now": work_now(employee),
        "recent": recent_tasks(employee),
        "versions": versions,
        "live_version": active_brief_version(employee),
        # The latest change, shown before anyone picks two versions.
        "diff": diff_versions(versions[1], versions[0]) if len(versions) >= 2 else None,
    }
