"""Who may ask whom: the collaboration lines along which an AI employee may delegate.

The same team, the reporting line (either way), the delegate grant's allow-list, or another
team's manager employee when that team accepts requests from other teams (the manager routes
them). The org chart shows these lines; tasks.services refuses a delegation outside them.
"""

from __future__ import annotations

from django.db.models import Q

from employees.models import Employee, EmployeeStatus


def collaboration_line(source: Employee, target: Employee, scope: dict | None = None) -> str:
    """Why `source` may delegate to `target` ("" when it may not)."""
    if target.pk == source.pk:
        return ""
    if target.team_id == source.team_id:
        return "same team"
    if target.reports_to_id == source.pk:
        return "reports to you"
    if source.reports_to_id == target.pk:
        return "you report to them"
    if target.handle in (scope or {}).get("allowed_handles", []):
        return "allow-list"
    if target.is_manager and target.team.accepts_requests_from_other_teams:
        return f"manager employee of {target.team.name}"
    return ""


def outside_lines_message(source: Employee, target: Employee) -> str:
    """Why `target` is out of reach for `source`, and whom to ask instead (for the model)."""
    team = target.team
    if not team.accepts_requests_from_other_teams:
        who = (
            f"@{target.handle} is a manager employee of the team '{team.name}'"
            if target.is_manager
            else f"@{target.handle} is in the team '{team.name}', outside your collaboration lines"
        )
        return (
            f"{who}, and '{team.name}' does not accept requests from other teams. A manager "
            f"of '{team.name}' can allow them (the team's 'Accepts requests from other teams' "
            "in the back office); until then, ask a person instead (escalate_to_human)."
        )
    managers = list(
        Employee.objects.filter(
            team=target.team_id,
            is_manager=True,
            status__in=[EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW],
        ).values_list("handle", flat=True)
    )
    where = (
        f"@{target.handle} is in the team '{target.team.name}', outside your collaboration lines"
    )
    if managers:
        return (
            f"{where}. Requests into that team go to its manager employee "
            f"{', '.join('@' + h for h in managers)}, which routes them: delegate to them instead."
        )
    return (
        f"{where}, and that team has no manager employee to route requests. "
        "Ask a person instead (escalate_to_human)."
    )


def collaborators(employee: Employee, scope: dict | None = None) -> list[tuple[Employee, str]]:
    """Everyone this employee may delegate to, with the line that allows it."""
    scope = scope or {}
    candidates = (
        Employee.objects.filter(
            Q(team=employee.team_id)
            | Q(reports_to=employee.pk)
            | Q(pk=employee.reports_to_id)
            | Q(handle__in=scope.get("allowed_handles", []))
            | Q(is_manager=True, team__accepts_requests_from_other_teams=True),
            status__in=[EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW, EmployeeStatus.PAUSED],
        )
        .exclude(pk=employee.pk)
        .select_related("team")
        .order_by("team__name", "name")
    )
    found = []
    for other in candidates:
        line = collaboration_line(employee, other, scope)
        if line:
            found.append((other, line))
    return found
