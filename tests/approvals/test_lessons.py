"""People's feedback (rejections, edits, escalation answers) becomes lessons in the next prompt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from aiworkforce.models import AuditEntry
from approvals.models import ApprovalRequest, Escalation
from approvals.services import (
    DecisionConflict,
    approval_decide,
    arguments_change_summary,
    escalation_answer,
    escalation_create,
    lesson_record,
)
from employees.models import MemoryEntry, MemoryKind
from tasks.loop import run_task
from tasks.models import Task, TaskStatus
from tasks.services import task_create
from tests.factories import UserFactory, assigned_task
from tests.fakes.openai_server import reply

pytestmark = pytest.mark.django_db


def _email_call(subject="Your order"):
    return reply(
        "I will confirm by email.",
        tool_calls=[("send_email", {"to": ["ann@example.com"], "subject": subject, "body": "Hi."})],
    )


def _waiting_approval(model_server, clerk) -> ApprovalRequest:
    model_server.enqueue(_email_call())
    task = assigned_task(clerk)
    assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL
    return ApprovalRequest.objects.get(task=task)


def test_a_rejection_reason_is_recalled_on_the_next_similar_task_and_cited(model_server, clerk):
    approval = _waiting_approval(model_server, clerk)
    dana = UserFactory(username="dana")
    approval_decide(
        approval=approval, user=dana, decision="rejected", comment="Never promise delivery dates."
    )
    lesson = MemoryEntry.objects.get(kind=MemoryKind.LESSON)
    assert lesson.employee == clerk and lesson.scope == "employee"
    assert lesson.source == f"approval #{approval.pk}" and lesson.created_by == dana
    assert lesson.embedding is not None and lesson.embedder == "offline-hash-v1"
    assert lesson.source_task == approval.task
    assert lesson.text == (
        "On the task 'Please help the customer.', a person rejected your send_email action. "
        "Reason: Never promise delivery dates."
    )
    assert lesson.details == {
        "tool": "send_email",
        "decision": "rejected",
        "reason": "Never promise delivery dates.",
    }
    remembered = AuditEntry.objects.get(action="memory.remembered")
    assert remembered.data["kind"] == "lesson" and "text" not in remembered.data

    model_server.enqueue(reply(f"Answered the customer without a date [m{lesson.pk}] [m999]."))
    task = assigned_task(clerk, "Please help the customer with their delivery.")
    assert run_task(task.pk) == TaskStatus.DONE
    system, _, memories = (m["content"] for m in model_server.requests[-1]["body"]["messages"][:3])
    assert "Lessons there are guidance from the people who manage you" in system
    assert f'[m{lesson.pk}] (lesson, approval #{approval.pk}) "{lesson.text}"' in memories
    final = task.steps.get(kind="final")
    assert final.payload["citations"] == [lesson.pk]  # m999 was never shown: not a citation


def test_an_edit_is_remembered_as_what_changed(model_server, clerk):
    approval = _waiting_approval(model_server, clerk)
    edited = {"to": ["ann@example.com"], "subject": "Your order #42", "body": "Hi."}
    approval_decide(
        approval=approval,
        user=UserFactory(),
        decision="approved",
        edited_arguments=edited,
        comment="Always quote the order number.",
    )
    lesson = MemoryEntry.objects.get(kind=MemoryKind.LESSON)
    assert lesson.text == (
        "On the task 'Please help the customer.', a person approved your send_email action only "
        "after changing it: subject: 'Your order' → 'Your order #42'. "
        "Comment: Always quote the order number."
    )
    assert lesson.details["decision"] == "edited"
    assert lesson.details["changes"] == {"subject": {"from": "Your order", "to": "Your order #42"}}


def test_an_approval_as_proposed_teaches_nothing(model_server, clerk):
    approval = _waiting_approval(model_server, clerk)
    approval_decide(approval=approval, user=UserFactory(), decision="approved")
    assert not MemoryEntry.objects.exists()


def test_a_decision_that_loses_the_race_records_no_lesson(model_server, clerk):
    approval = _waiting_approval(model_server, clerk)
    stale = ApprovalRequest.objects.get(pk=approval.pk)
    approval_decide(approval=approval, user=UserFactory(), decision="rejected", comment="No.")
    with pytest.raises(DecisionConflict):
        approval_decide(approval=stale, user=UserFactory(), decision="rejected", comment="Nope.")
    assert list(MemoryEntry.objects.values_list("text", flat=True)) == [
        "On the task 'Please help the customer.', a person rejected your send_email action. "
        "Reason: No."
    ]


def test_an_escalation_answer_becomes_a_lesson(clerk):
    task, _ = task_create(employee=clerk, title="", input="Refund?", dispatch=False)
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.WAITING_ESCALATION)
    escalation = escalation_create(
        task=task,
        summary="The customer wants a refund after 40 days.",
        evidence=[],
        options=["Refund", "Decline"],
        recommendation="Decline",
    )
    escalation_answer(
        escalation=escalation,
        user=UserFactory(),
        chosen_option="Refund",
        answer="Loyal customers get refunds up to 60 days.",
    )
    lesson = MemoryEntry.objects.get(kind=MemoryKind.LESSON)
    assert lesson.source == f"escalation #{escalation.pk}"
    assert lesson.text == (
        "When you escalated 'The customer wants a refund after 40 days.', a person chose "
        "'Refund' and answered: Loyal customers get refunds up to 60 days."
    )
    assert Escalation.objects.get(pk=escalation.pk).status == "answered"


def test_the_prompt_recalls_the_nearest_unexpired_memories(model_server, clerk):
    user = UserFactory()
    lesson_record(
        employee=clerk, text="Refunds need the order number.", source="approval #1", user=user
    )
    for number in range(2, 9):
        lesson_record(
            employee=clerk, text=f"Shipping note {number}", source=f"approval #{number}", user=user
        )
    old = lesson_record(
        employee=clerk, text="Refunds are never allowed.", source="approval #99", user=user
    )
    MemoryEntry.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(days=1))
    model_server.enqueue(reply("Done."))
    task = assigned_task(clerk, "A customer asks for a refund of their order.")
    assert run_task(task.pk) == TaskStatus.DONE
    memories = model_server.requests[-1]["body"]["messages"][2]["content"]
    recalled = [line for line in memories.splitlines() if line.startswith("  - [m")]
    assert len(recalled) == 5  # MEMORY_RECALL_K
    assert "Refunds need the order number." in recalled[0]  # nearest first
    assert "never allowed" not in memories  # expired
    # What was recalled is recorded with the first model step, for a resume and for the page.
    first = task.steps.filter(kind="llm_call").order_by("seq").first()
    assert first.payload["recalled"][0]["text"] == "Refunds need the order number."


def test_change_summary_reads_like_a_person_wrote_it():
    before = {"subject": "A", "to": ["a@example.com"], "cc": "x"}
    after = {"subject": "B", "to": ["a@example.com"], "body": "long " * 40}
    summary = arguments_change_summary(before, after)
    assert summary.startswith("subject: 'A' → 'B'; cc: removed 'x'; body: added 'long long")
    assert summary.endswith("…'")
