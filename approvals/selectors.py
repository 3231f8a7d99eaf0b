"""What a person may decide: the approvals and escalations of the teams they approve for."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.http import Http404

from approvals.models import ApprovalRequest, ApprovalStatus, Escalation, EscalationStatus
from employees.models import Employee, Team, TeamMembership, TeamRole
from tasks.models import Task

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
    filters = {"team": team, "employee": employee, "risk": risk, "kind": kind}
    if query:
        return pending_search_for(user, query=query, **filters).rows
    return _filtered(user, **filters).order_by("-created_at", "-id")


def _filtered(user, *, team=None, employee=None, risk="", kind="") -> QuerySet[ApprovalRequest]:
    qs = approvals_for(user).filter(status=ApprovalStatus.PENDING)
    if team:
        qs = qs.filter(employee__team_id=team)
    if employee:
        qs = qs.filter(employee_id=employee)
    if risk:
        qs = qs.filter(risk=risk)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


# A search matching at most this many pending requests fetches them by id (one index lookup
# each); a broader one tests every pending row against the matching id sets instead.
SEARCH_BY_ID_AT_MOST = 1000


@dataclass
class PendingSearch:
    """A search of the pending requests: its rows (newest first) and what counts them."""

    rows: QuerySet[ApprovalRequest]
    filtered: QuerySet[ApprovalRequest]  # the same, before the search
    query: str
    found: set[int]  # the first SEARCH_BY_ID_AT_MOST + 1 matches of any team

    def count_at_most(self, cap: int) -> int:
        """How many rows there are, counted up to `cap` + 1 only ("more than `cap`").

        A narrow search's rows are its few matches. A broad one's are first looked for among
        the matches already found: if all 1,001 are the person's, there are more than 1,000.
        Else it is counted as a UNION of its three kinds of match, each branch stopping after
        `cap` + 1 rows from its own index."""
        if len(self.found) <= SEARCH_BY_ID_AT_MOST:
            return self.rows.order_by().values("pk")[: cap + 1].count()
        mine = self.filtered.order_by().values_list("pk", flat=True)
        if cap < len(self.found) and mine.filter(pk__in=self.found).count() > cap:
            return cap + 1
        _, tasks, employees = _matches(self.query)
        own = Q(tool_name__icontains=self.query) | Q(reason__icontains=self.query)
        branches = [
            mine.filter(own)[: cap + 1],
            mine.filter(task__in=tasks)[: cap + 1],
            mine.filter(employee__in=employees)[: cap + 1],
        ]
        return min(cap + 1, branches[0].union(*branches[1:]).count())


def pending_search_for(user, *, query: str, **filters) -> PendingSearch:
    """The requests of `approvals_pending_for` whose action, reason, task title or employee
    contain `query`.

    The matching ids are fetched first, a cheap query, so a narrow search reads only its own
    rows; a broad one tests each row walking the newest-first index, a page stopping after 25.
    """
    filtered = _filtered(user, **filters)
    found = set(pending_ids_matching(query)[: SEARCH_BY_ID_AT_MOST + 1])
    if len(found) <= SEARCH_BY_ID_AT_MOST:
        rows = filtered.filter(pk__in=found)
    else:
        # The row's own columns are tested on the row itself: as `pk IN (matching ids)`
        # PostgreSQL would first read every match (30,000 rows for a tool name) to hash their
        # ids, even for a page of 25.
        _, tasks, employees = _matches(query)
        rows = filtered.filter(
            Q(tool_name__icontains=query)
            | Q(reason__icontains=query)
            | Q(task__in=tasks)
            | Q(employee__in=employees)
        )
    return PendingSearch(rows.order_by("-created_at", "-id"), filtered, query, found)


def _matches(query: str) -> tuple[QuerySet, QuerySet, QuerySet]:
    """What contains `query`, each from its own index: pending requests by reason or tool name
    and task titles (trigram indexes on UPPER(col) with gin_trgm_ops, which serve `icontains`,
    UPPER(col) LIKE), employees by name or handle (a few rows). One OR of the joined columns
    would instead test the text of every pending row after the joins."""
    own = ApprovalRequest.objects.filter(
        Q(tool_name__icontains=query) | Q(reason__icontains=query),
        status=ApprovalStatus.PENDING,  # the trigram indexes hold the pending rows only
    )
    tasks = Task.objects.filter(title__icontains=query).values("pk")
    employees = Employee.objects.filter(
        Q(name__icontains=query) | Q(handle__icontains=query.lstrip("@"))
    ).values("pk")
    return own, tasks, employees


def pending_ids_matching(query: str) -> QuerySet:
    """The ids of pending requests (of any team) matching `query`, possibly repeated: a UNION
    ALL, without de-duplication, so a LIMIT stops each branch early."""
    own, tasks, employees = _matches(query)
    pending = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
    branches = [  # unordered: a sort would read every match before the LIMIT
        own.order_by().values_list("pk", flat=True),
        pending.filter(task__in=tasks).order_by().values_list("pk", flat=True),
        pending.filter(employee__in=employees).order_by().values_list("pk", flat=True),
    ]
    return branches[0].union(*branches[1:], all=True).order_by()


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


def desk_counts(user) -> dict[str, int]:
    """What waits for the person: pending approvals and open escalations, counted apart."""
    return {
        "approvals": approvals_for(user).filter(status=ApprovalStatus.PENDING).count(),
        "escalations": escalations_open_for(user).count(),
    }


def pending_count_for(user) -> int:
    """For the navigation badge: pending approvals plus open escalations."""
    return sum(desk_counts(user).values())
