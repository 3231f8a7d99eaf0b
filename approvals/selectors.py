"""What a person may decide: the approvals and escalations of the teams they approve for."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from approvals.models import ApprovalRequest, ApprovalStatus, Escalation, EscalationStatus
from employees.models import Employee, Team, TeamMembership, TeamRole

DECIDING_ROLES = (TeamRole.MANAGER, TeamRole.APPROVER)


def teams_deciding_for(user) -> QuerySet[Team]:
    """Teams where the person approves: as approver or manager, or as an employee's manager."""
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(
        Q(memberships__user=user, memberships__role__in=DECIDING_ROLES) | Q(employees__manager=user)
    ).distinct()


def _scoped(qs, user):
    """An employee's requests go to its team's approvers and managers, and its own manager."""
    if user.is_superuser:
        return qs
    deciding = TeamMembership.objects.filter(user=user, role__in=DECIDING_ROLES).values("team")
    return qs.filter(Q(employee__team__in=deciding) | Q(employee__manager=user))


def approvals_for(user) -> QuerySet[ApprovalRequest]:
    """Every approval request (any status) of the person's deciding teams."""
    return (
        _scoped(ApprovalRequest.objects.all(), user)
        .select_related("employee__team", "task", "decided_by")
        .defer("task__input", "task__result")
    )


def approvals_pending_for(
    user,
    *,
    team: int | None = None,
    employee: int | None = None,
    risk: str = "",
    kind: str = "",
    query: str = "",
) -> QuerySet[ApprovalRequest]:
    """The pending requests a person may decide, newest first, filtered as the inbox asks."""
    qs = approvals_for(user).filter(status=ApprovalStatus.PENDING)
    if team:
        qs = qs.filter(employee__team_id=team)
    if employee:
        qs = qs.filter(employee_id=employee)
    if risk:
        qs = qs.filter(risk=risk)
    if kind:
        qs = qs.filter(kind=kind)
    if query:
        qs = qs.filter(
            Q(tool_name__icontains=query)
            | Q(reason__icontains=query)
            | Q(task__title__icontains=query)
            | Q(employee__name__icontains=query)
            | Q(employee__handle__icontains=query.lstrip("@"))
        )
    return qs.order_by("-created_at", "-id")


def approval_for_user(user, pk: int) -> ApprovalRequest:
    """One request of the person's teams, whatever its status; 404 otherwise."""
    approval = approvals_for(user).filter(pk=pk).first()
    if approval is None:
        raise Http404("No such approval request.")
    return approval


def employees_deciding_for(user) -> QuerySet[Employee]:
    return _scoped_employees(user).order_by("name")


def _scoped_employees(user) -> QuerySet[Employee]:
    if user.is_superuser:
        return Employee.objects.all()
    deciding = TeamMembership.objects.filter(user=user, role__in=DECIDING_ROLES).values("team")
    return Employee.objects.filter(Q(team__in=deciding) | Q(manager=user))


def escalations_open_for(user) -> QuerySet[Escalation]:
    return (
        _scoped(Escalation.objects.filter(status=EscalationStatus.OPEN), user)
        .select_related("employee__team", "task")
        .order_by("-created_at")
    )


def escalation_for_user(user, pk: int) -> Escalation:
    escalation = (
        _scoped(Escalation.objects.all(), user)
        .select_related("employee__team", "task", "answered_by")
        .filter(pk=pk)
        .first()
    )
    if escalation is None:
        raise Http404("No such escalation.")
    return escalation


def pending_count_for(user) -> int:
    """For the navigation badge: pending approvals plus open escalations."""
    return (
        approvals_for(user).filter(status=ApprovalStatus.PENDING).count()
        + escalations_open_for(user).count()
    )
