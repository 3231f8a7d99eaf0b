"""Approvals waiting in two teams, and people who decide for one of them."""

from __future__ import annotations

import pytest

from approvals.models import ApprovalKind, ApprovalRequest
from tasks.models import TaskStatus
from tasks.services import task_create
from tests.factories import (
    EmployeeFactory,
    MembershipFactory,
    TeamFactory,
    ToolGrantFactory,
    UserFactory,
)


def make_approval(
    employee,
    *,
    tool="send_email",
    arguments=None,
    risk="high",
    reason="I should tell them.",
    kind=ApprovalKind.TOOL_CALL,
):
    task, _ = task_create(
        employee=employee, title=f"Task of {employee.handle}", input="x", dispatch=False
    )
    task.status = TaskStatus.WAITING_APPROVAL
    task.save(update_fields=["status"])
    return ApprovalRequest.objects.create(
        task=task,
        employee=employee,
        kind=kind,
        tool_name=tool if kind == ApprovalKind.TOOL_CALL else "",
        arguments=arguments
        or {"to": ["ann@example.com"], "subject": "Your order", "body": "It shipped today."},
        reason=reason,
        risk=risk,
    )


@pytest.fixture
def teams(db):
    support, ops = TeamFactory(name="Support"), TeamFactory(name="Ops")
    ava = EmployeeFactory(name="Ava", handle="ava", team=support)
    rex = EmployeeFactory(name="Rex", handle="rex", team=ops)
    for employee in (ava, rex):
        ToolGrantFactory(
            employee=employee,
            tool_name="send_email",
            scope={"allowed_domains": ["example.com"]},
            policy="needs_approval",
        )
    return {"support": support, "ops": ops, "ava": ava, "rex": rex}


@pytest.fixture
def approver(teams):
    user = UserFactory(username="dana", email="dana@example.com")
    MembershipFactory(team=teams["support"], user=user, role="approver")
    return user


@pytest.fixture
def outsider(teams):
    user = UserFactory(username="omar")
    MembershipFactory(team=teams["ops"], user=user, role="approver")
    return user
