"""Approval deadlines: an undecided action is never executed, and a person hears about it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from aiworkforce.models import AuditEntry
from approvals.models import ApprovalKind, ApprovalRequest, ApprovalStatus, Escalation
from approvals.services import (
    DecisionConflict,
    approval_decide,
    approvals_expire_due,
    escalation_answer,
)
from tasks.jobs import run_due
from tasks.loop import run_task
from tasks.models import OutboxEmail, Step, StepKind, Task, TaskStatus
from tasks.services import task_create
from tests.factories import UserFactory
from tests.fakes.openai_server import reply

pytestmark = pytest.mark.django_db


def _waiting_approval(model_server, clerk) -> ApprovalRequest:
    model_server.enqueue(
        reply(
            "I will confirm by email.",
            tool_calls=[
                ("send_email", {"to": ["ann@example.com"], "subject": "Order", "body": "Hi."})
            ],
        )
    )
    task, _ = task_create(employee=clerk, title="", input="Confirm the order.", urgent=True)
    assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL
    return ApprovalRequest.objects.get(task=task)


def _past_deadline(approval: ApprovalRequest) -> None:
    ApprovalRequest.objects.filter(pk=approval.pk).update(
        deadline=timezone.now() - timedelta(minutes=1)
    )


def test_an_expired_action_is_never_executed_and_escalated_to_a_person(model_server, clerk):
    approval = _waiting_approval(model_server, clerk)
    task = approval.task
    _past_deadline(approval)
    calls_before = model_server.calls

    assert approvals_expire_due() == 1
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.EXPIRED and approval.decided_by is None
    assert AuditEntry.objects.filter(action="approval.expired").count() == 1
    assert Task.objects.get(pk=task.pk).status == TaskStatus.QUEUED

    assert run_task(task.pk) == TaskStatus.WAITING_ESCALATION
    assert model_server.calls == calls_before  # nothing asked of the model meanwhile
    assert not OutboxEmail.objects.exists()
    [result] = Step.objects.filter(task=task, kind=StepKind.TOOL_CALL)
    assert result.payload["status"] == "rejected"
    assert result.payload["result"]["error"] == (
        "Nobody decided on this action before its deadline; it was not executed."
    )
    escalation = Escalation.objects.get(task=task)
    assert escalation.summary == "The approval of send_email expired without a decision."

    escalation_answer(escalation=escalation, user=UserFactory(), chosen_option="Let it continue")
    model_server.enqueue(reply("Nobody approved the email; I left a note instead."))
    assert run_task(task.pk) == TaskStatus.DONE
    assert not OutboxEmail.objects.exists()
    assert Escalation.objects.filter(task=task).count() == 1  # the expiry is escalated once
    messages = model_server.requests[-1]["body"]["messages"]
    assert "before its deadline" in next(m["content"] for m in messages if m["role"] == "tool")
    assert messages[-1]["content"] == "A person answered your escalation: Let it continue"


def test_expiring_twice_is_harmless(model_server, clerk):
    approval = _waiting_approval(model_server, clerk)
    _past_deadline(approval)
    assert approvals_expire_due() == 1
    assert approvals_expire_due() == 0
    assert AuditEntry.objects.filter(action="approval.expired").count() == 1
    assert AuditEntry.objects.filter(action="task.resumed").count() == 1
    with pytest.raises(DecisionConflict, match="Already expired by the system"):
        approval_decide(approval=approval, user=UserFactory(), decision="approved")


def test_a_decided_or_undue_request_is_never_expired(model_server, clerk):
    decided = _waiting_approval(model_server, clerk)
    approval_decide(approval=decided, user=UserFactory(), decision="approved")
    _past_deadline(decided)
    undue = _waiting_approval(model_server, clerk)
    no_deadline = _waiting_approval(model_server, clerk)
    ApprovalRequest.objects.filter(pk=no_deadline.pk).update(deadline=None)

    assert approvals_expire_due() == 0
    statuses = dict(ApprovalRequest.objects.values_list("pk", "status"))
    assert statuses == {
        decided.pk: ApprovalStatus.APPROVED,
        undue.pk: ApprovalStatus.PENDING,
        no_deadline.pk: ApprovalStatus.PENDING,
    }
    # A deadline passing later is what makes a request due.
    assert approvals_expire_due(now=timezone.now() + timedelta(days=2)) == 1


def test_an_expired_budget_raise_stops_the_task(model_server, clerk):
    clerk.max_cost_per_task = Decimal("0")
    clerk.save()
    task, _ = task_create(employee=clerk, title="", input="x" * 3000, urgent=True)
    assert run_task(task.pk) == TaskStatus.BUDGET_EXHAUSTED
    approval = ApprovalRequest.objects.get(task=task, kind=ApprovalKind.BUDGET_RAISE)
    _past_deadline(approval)

    assert approvals_expire_due() == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    assert task.status_reason == "Nobody decided on the budget raise before its deadline."
    assert model_server.calls == 0


def test_the_batch_pass_expires_due_approvals(model_server, clerk):
    approval = _waiting_approval(model_server, clerk)
    _past_deadline(approval)
    assert run_due()["expired_approvals"] == 1
    assert run_due()["expired_approvals"] == 0
