"""Reads of the workforce that more than one caller needs, scoped to what a person may see."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from employees.models import Employee, Team, TeamMembership


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
