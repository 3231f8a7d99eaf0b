"""Reads for hiring: which teams a person may hire into, and a team written out as a file."""

from __future__ import annotations

import base64
from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from employees.hiring.spec import DAYS, TEAM_FORMAT
from employees.models import (
    BRIEF_FIELDS,
    DocumentStatus,
    Employee,
    EmployeeStatus,
    KnowledgeDocument,
    MemoryEntry,
    MemoryKind,
    Team,
    TeamRole,
)
from employees.selectors import teams_visible_to

TEXT_TYPES = ("text/plain", "text/markdown")


def teams_managed_by(user) -> QuerySet[Team]:
    """The teams a person may hire into and export: superusers all, others where they manage."""
    teams = teams_visible_to(user)
    if user.is_superuser:
        return teams.order_by("name")
    return (
        Team.objects.filter(memberships__user=user, memberships__role=TeamRole.MANAGER)
        .distinct()
        .order_by("name")
    )


def _documents(queryset) -> list[dict]:
    """Each title's newest readable upload: text as text, a PDF as base64."""
    out, seen = [], set()
    for document in queryset.exclude(status=DocumentStatus.FAILED).order_by("title", "-created_at"):
        if document.title in seen:
            continue
        seen.add(document.title)
        content = bytes(document.content)
        if document.content_type in TEXT_TYPES:
            out.append({"title": document.title, "text": content.decode("utf-8", "replace")})
        else:
            out.append(
                {"title": document.title, "content_base64": base64.b64encode(content).decode()}
            )
    return out


def _facts(queryset) -> list[dict]:
    return [
        {"text": text, "pinned": pinned}
        for text, pinned in queryset.filter(kind=MemoryKind.FACT)
        .order_by("created_at", "pk")
        .values_list("text", "pinned")
    ]


def _windows(employee: Employee) -> list[dict]:
    """Working windows grouped: the days that share the same hours go in one entry."""
    by_hours: dict[tuple[str, str], list[str]] = {}
    for window in employee.working_windows.all():
        key = (f"{window.start:%H:%M}", f"{window.end:%H:%M}")
        by_hours.setdefault(key, []).append(DAYS[window.weekday])
    return [{"days": days, "from": start, "to": end} for (start, end), days in by_hours.items()]


def employee_spec_of(employee: Employee) -> dict:
    """An employee as an employee spec: everything it is made of (its golden tasks too), never a
    secret or its history."""
    model = {"temperature": str(employee.temperature)}
    if employee.model_name:
        model["model_name"] = employee.model_name
    if employee.model_base_url:
        model["model_base_url"] = employee.model_base_url
    if employee.context_window:
        model["context_window"] = employee.context_window
    spec = {
        "name": employee.name,
        "handle": employee.handle,
        "avatar_colour": employee.avatar_colour,
        "is_manager": employee.is_manager,
        "role_title": employee.role_title,
        "job_description": employee.job_description,
        "brief": {name: getattr(employee, name) for name in BRIEF_FIELDS},
        "sop": employee.sop,
        # Scope and policy only: not the MCP pin (re-pinned to the server's tool on import),
        # nor any credential (they stay with the deployment that has them).
        "tools": [
            {"tool": grant.tool_name, "policy": grant.policy, "scope": grant.scope}
            for grant in employee.tool_grants.filter(suspended_at__isnull=True).order_by(
                "tool_name"
            )
        ],
        "working_hours": {
            "timezone": employee.timezone,
            "always_on": employee.always_on,
            "windows": _windows(employee),
        },
        "budgets": {
            "max_cost_per_task": str(employee.max_cost_per_task),
            "max_cost_per_day": str(employee.max_cost_per_day),
            "max_tokens_per_turn": employee.max_tokens_per_turn,
        },
        "duties": [
            {
                "name": duty.name,
                "cron": duty.cron,
                "timezone": duty.timezone,
                "instructions": duty.instructions,
                "enabled": duty.enabled,
            }
            for duty in employee.duties.order_by("name", "pk")
        ],
        "knowledge": _documents(KnowledgeDocument.objects.filter(employee=employee)),
        "facts": _facts(MemoryEntry.objects.filter(employee=employee)),
        "model": model,
        "memory_retention_days": employee.memory_retention_days,
        # Its golden tasks travel with it, so a copy is evaluated against the same cases.
        "golden_tasks": [
            {"title": title, "input": text, "expectations": expectations}
            for title, text, expectations in employee.golden_tasks.order_by("pk").values_list(
                "title", "input", "expectations"
            )
        ],
    }
    if employee.reports_to_id:
        spec["reports_to"] = employee.reports_to.handle
    return spec


def suspended_grants(team: Team) -> list[str]:
    """Grants a team file leaves out (suspended until a manager reviews a changed MCP tool)."""
    return [
        f"@{handle}: {tool}"
        for handle, tool in Employee.objects.filter(team=team)
        .exclude(status=EmployeeStatus.OFFBOARDED)
        .filter(tool_grants__suspended_at__isnull=False)
        .values_list("handle", "tool_grants__tool_name")
    ]


def team_file(team: Team, *, now: datetime | None = None) -> dict:
    """The team as a team file: its employees (not offboarded ones), their knowledge and its own."""
    employees = (
        Employee.objects.filter(team=team)
        .exclude(status=EmployeeStatus.OFFBOARDED)
        .select_related("reports_to")
        .prefetch_related("working_windows")
        .order_by("-is_manager", "name", "pk")
    )
    return {
        "format": TEAM_FORMAT,
        "exported_at": (now or timezone.now()).isoformat(timespec="seconds"),
        "team": {
            "name": team.name,
            "description": team.description,
            "accepts_requests_from_other_teams": team.accepts_requests_from_other_teams,
        },
        "knowledge": _documents(KnowledgeDocument.objects.filter(team=team, employee=None)),
        "facts": _facts(MemoryEntry.objects.filter(team=team, employee=None)),
        "employees": [employee_spec_of(employee) for employee in employees],
    }
