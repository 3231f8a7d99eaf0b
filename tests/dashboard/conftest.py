"""Two teams with work of their own, for the dashboard's figures and visibility."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from approvals.models import ApprovalKind, ApprovalRequest, ApprovalStatus, Escalation
from employees.models import Employee, Team, TeamRole
from tasks.models import DailySpend, Task, TaskStatus
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory, UserFactory


def local_noon(days_ago: int = 0) -> datetime:
    """Noon of a local day: far from midnight, whatever time the tests run at."""
    today = timezone.localdate()
    return datetime.combine(
        today - timedelta(days=days_ago), time(12), tzinfo=timezone.get_current_timezone()
    )


def make_task(
    employee: Employee,
    status: str = TaskStatus.DONE,
    *,
    finished: datetime | None = None,
    took: timedelta = timedelta(minutes=10),
    cost: str = "0.10",
    title: str = "Answer a customer",
) -> Task:
    """A task that arrived `took` before it finished (created_at is auto_now_add, so set after)."""
    task = Task.objects.create(
        employee=employee, title=title, input="Help.", status=status, cost=Decimal(cost)
    )
    fields = {}
    if finished is not None:
        fields = {"finished_at": finished, "created_at": finished - took, "updated_at": finished}
        Task.objects.filter(pk=task.pk).update(**fields)
        task.refresh_from_db()
    return task


def make_approval(
    task: Task, status: str, *, decided: datetime | None, waited: timedelta
) -> ApprovalRequest:
    approval = ApprovalRequest.objects.create(
        task=task,
        employee=task.employee,
        kind=ApprovalKind.TOOL_CALL,
        tool_name="send_email",
        status=status,
        decided_at=decided,
    )
    if decided is not None:
        ApprovalRequest.objects.filter(pk=approval.pk).update(created_at=decided - waited)
    return approval


def make_escalation(task: Task) -> Escalation:
    return Escalation.objects.create(task=task, employee=task.employee, summary="Which refund?")


def spend(employee: Employee, days_ago: int, amount: str) -> DailySpend:
    return DailySpend.objects.create(
        employee=employee,
        day=timezone.localdate() - timedelta(days=days_ago),
        spent=Decimal(amount),
    )


@dataclass
class Office:
    team_a: Team
    team_b: Team
    ava: Employee  # team A
    ben: Employee  # team A
    zed: Employee  # team B
    manager: object  # manager of both teams
    viewer_a: object  # viewer of team A only
    approver_a: object  # approver of team A only


@pytest.fixture
def office(db) -> Office:
    team_a, team_b = TeamFactory(name="Support"), TeamFactory(name="Finance")
    ava = EmployeeFactory(name="Ava", handle="ava", team=team_a, max_cost_per_day=Decimal("5"))
    ben = EmployeeFactory(name="Ben", handle="ben", team=team_a, max_cost_per_day=Decimal("3"))
    zed = EmployeeFactory(name="Zed", handle="zed", team=team_b, max_cost_per_day=Decimal("7"))
    manager = UserFactory(username="morgan")
    for team in (team_a, team_b):
        MembershipFactory(team=team, user=manager, role=TeamRole.MANAGER)
    viewer_a = UserFactory(username="vera")
    MembershipFactory(team=team_a, user=viewer_a, role=TeamRole.VIEWER)
    approver_a = UserFactory(username="april")
    MembershipFactory(team=team_a, user=approver_a, role=TeamRole.APPROVER)
    return Office(team_a, team_b, ava, ben, zed, manager, viewer_a, approver_a)


@pytest.fixture
def week_of_work(office: Office) -> Office:
    """Team A: 4 done (10, 20, 30 and 40 min), 1 failed, 1 cancelled in the last 7 days, one
    of them escalated; 1 done 20 days ago; 1 done 40 days ago. Team B: 5 done today, expensive."""
    make_task(office.ava, finished=local_noon(0), took=timedelta(minutes=10), cost="0.20")
    escalated = make_task(office.ava, finished=local_noon(1), took=timedelta(minutes=20))
    make_escalation(escalated)
    make_task(office.ben, finished=local_noon(2), took=timedelta(minutes=30))
    make_task(office.ben, finished=local_noon(6), took=timedelta(minutes=40))
    make_task(office.ava, TaskStatus.FAILED, finished=local_noon(3), took=timedelta(hours=5))
    make_task(office.ben, TaskStatus.CANCELLED, finished=local_noon(1), cost="0")
    make_task(office.ava, finished=local_noon(20), took=timedelta(hours=2))
    make_task(office.ava, finished=local_noon(40))
    approved = make_task(office.ava, finished=local_noon(2))
    make_approval(
        approved, ApprovalStatus.APPROVED, decided=local_noon(2), waited=timedelta(minutes=4)
    )
    for minutes in (2, 6):
        make_approval(
            approved,
            ApprovalStatus.APPROVED,
            decided=local_noon(1),
            waited=timedelta(minutes=minutes),
        )
    make_approval(
        approved, ApprovalStatus.REJECTED, decided=local_noon(0), waited=timedelta(minutes=8)
    )
    make_approval(approved, ApprovalStatus.EXPIRED, decided=local_noon(0), waited=timedelta(days=1))
    spend(office.ava, 0, "1.00")
    spend(office.ben, 1, "0.40")
    spend(office.ava, 10, "9.99")
    for _ in range(5):
        make_task(office.zed, finished=local_noon(0), took=timedelta(days=2), cost="3.00")
    spend(office.zed, 0, "15.00")
    return office
