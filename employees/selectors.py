"""Reads of the workforce that more than one caller needs, scoped to what a person may see."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from employees.collaboration import collaborators
from employees.models import (
    BriefVersion,
    Employee,
    EmployeeStatus,
    Team,
    TeamMembership,
    TeamRole,
    ToolGrant,
    ToolPolicy,
)


def teams_visible_to(user) -> QuerySet[Team]:
    """Superusers see every team; everyone else the teams they are a member of."""
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user).distinct()


def employees_visible_to(user) -> QuerySet[Employee]:
    qs = Employee.objects.select_related("team", "manager")
    if user.is_superuser:
        return qs
    return qs.filter(team__in=TeamMembership.objects.filter(user=user).values("team"))


def employee_directory(
    user, *, team_id: int | None = None, status: str = "", query: str = ""
) -> QuerySet[Employee]:
    """The employees a person may see, filtered as the directory page asks."""
    qs = employees_visible_to(user)
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    if status:
        qs = qs.filter(status=status)
    if query:
        qs = qs.filter(
            Q(name__icontains=query)
            | Q(handle__icontains=query.lstrip("@"))
            | Q(role_title__icontains=query)
            | Q(job_description__icontains=query)
        )
    return qs.order_by("name")


# --- the org chart ------------------------------------------------------------------------------


@dataclass
class OrgMember:
    employee: Employee
    level: int
    work: str  # what it is doing now, for people
    work_class: str
    open_tasks: int
    delegates_to: list[tuple[Employee, str]] = field(default_factory=list)
    reports_elsewhere: Employee | None = None


@dataclass
class OrgTeam:
    team: Team
    human_managers: list
    ai_managers: list[Employee]
    members: list[OrgMember]


_WAITING_FOR_PEOPLE = {"waiting_approval", "waiting_escalation", "budget_exhausted"}


def _work_label(counts: dict[str, int]) -> tuple[str, str]:
    if counts.get("running"):
        return "Working", "work-running"
    if counts.get("model_misconfigured"):  # every task of the employee will stop the same way
        return "Model settings wrong", "work-problem"
    if _WAITING_FOR_PEOPLE & counts.keys():
        return "Waiting for a person", "work-waiting"
    if counts.get("waiting_children"):
        return "Waiting for delegated work", "work-delegated"
    if counts:
        return "Has queued work", "work-queued"
    return "Idle", "work-idle"


def org_chart(user, *, team_id: int | None = None) -> list[OrgTeam]:
    """The teams a person may see: people and AI managers, reporting and collaboration lines,
    and what each employee is doing right now."""
    from django.db.models import Count

    from tasks.models import FINISHED_STATUSES, Task

    teams = list(teams_visible_to(user).select_related("parent").order_by("name"))
    if team_id is not None:
        teams = [team for team in teams if team.pk == team_id]
    employees = list(
        Employee.objects.filter(team__in=teams)
        .exclude(status=EmployeeStatus.OFFBOARDED)
        .select_related("team", "manager", "reports_to__team")
        .order_by("name")
    )
    counts: dict[int, dict[str, int]] = {}
    for row in (
        Task.objects.filter(employee__in=employees)
        .exclude(status__in=FINISHED_STATUSES)
        .values("employee_id", "status")
        .annotate(n=Count("pk"))
    ):
        counts.setdefault(row["employee_id"], {})[row["status"]] = row["n"]
    delegating = dict(
        ToolGrant.objects.filter(employee__in=employees, tool_name="delegate")
        .exclude(policy=ToolPolicy.NEVER)
        .values_list("employee_id", "scope")
    )
    managers = {team_pk: [] for team_pk in (team.pk for team in teams)}
    for membership in TeamMembership.objects.filter(
        team__in=teams, role=TeamRole.MANAGER
    ).select_related("user"):
        managers[membership.team_id].append(membership.user)
    chart = []
    for team in teams:
        members = [employee for employee in employees if employee.team_id == team.pk]
        rows: list[OrgMember] = []
        _walk_reporting_lines(members, counts, delegating, rows)
        chart.append(
            OrgTeam(
                team=team,
                human_managers=managers[team.pk],
                ai_managers=[employee for employee in members if employee.is_manager],
                members=rows,
            )
        )
    return chart


def _walk_reporting_lines(
    members: list[Employee],
    counts: dict[int, dict[str, int]],
    delegating: dict[int, dict],
    rows: list[OrgMember],
) -> None:
    """Depth first along the reporting lines inside one team, managers first."""
    in_team = {member.pk for member in members}
    below: dict[int | None, list[Employee]] = {}
    for member in sorted(members, key=lambda m: (not m.is_manager, m.name)):
        boss = member.reports_to_id if member.reports_to_id in in_team else None
        below.setdefault(boss, []).append(member)

    def walk(boss: int | None, level: int) -> None:
        for member in below.get(boss, []):
            work, work_class = _work_label(counts.get(member.pk, {}))
            scope = delegating.get(member.pk)
            elsewhere = member.reports_to_id and member.reports_to_id not in in_team
            rows.append(
                OrgMember(
                    employee=member,
                    level=level,
                    work=work,
                    work_class=work_class,
                    open_tasks=sum(counts.get(member.pk, {}).values()),
                    delegates_to=collaborators(member, scope) if scope is not None else [],
                    reports_elsewhere=member.reports_to if elsewhere else None,
                )
            )
            walk(member.pk, level + 1)

    walk(None, 0)


def managers_to_notify(employee: Employee) -> QuerySet:
    """Who is told about an employee's trouble by mail: its manager and its team's managers
    (active, with an address)."""
    return (
        get_user_model()
        .objects.filter(
            Q(team_memberships__team=employee.team_id, team_memberships__role=TeamRole.MANAGER)
            | Q(pk=employee.manager_id),
            is_active=True,
        )
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )


def active_brief_version(employee: Employee) -> BriefVersion | None:
    """The live version: the latest activated (drafts never were)."""
    return (
        BriefVersion.objects.filter(employee=employee, activated_at__isnull=False)
        .order_by("-activated_at", "-number")
        .first()
    )
