"""The issue's acceptance, in the demo and offline: a rejection with a reason changes what the
employee does on its next similar task, and that task's page cites the lesson."""

from __future__ import annotations

import pytest
from django.urls import reverse

from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from employees.demo import load_demo_tasks, load_demo_workforce
from employees.models import Employee, MemoryEntry, MemoryKind
from tasks.loop import run_task
from tasks.models import Task, TaskStatus
from tasks.services import task_create

pytestmark = pytest.mark.django_db

GUIDANCE = "Include the self-service reset link https://example.com/reset in the reply."


def _run_to_approval(task: Task) -> ApprovalRequest:
    assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL
    return ApprovalRequest.objects.get(task=task, status="pending")


def test_a_rejected_draft_teaches_ava_and_her_next_similar_task_applies_and_cites_it(
    settings, admin_client, superuser
):
    settings.OPENAI_API_KEY = ""  # offline mode
    load_demo_workforce(owner=superuser)
    load_demo_tasks(base_url="http://127.0.0.1:9/")
    ava = Employee.objects.get(handle="ava-support")
    first = Task.objects.get(employee=ava, idempotency_key="demo:password-reset")
    rejected = _run_to_approval(first)
    approval_decide(approval=rejected, user=superuser, decision="rejected", comment=GUIDANCE)
    lesson = MemoryEntry.objects.get(employee=ava, kind=MemoryKind.LESSON)

    second, _ = task_create(
        employee=ava,
        title="Forgot my password",
        input="From: tom@example.com\nSubject: Password\n\nI forgot my password, how can I reset it?",
        urgent=True,
    )
    approval = _run_to_approval(second)
    # Behaves differently: the new draft carries the guidance the person gave.
    assert GUIDANCE not in rejected.arguments["body"]
    assert f"Following earlier guidance [m{lesson.pk}]: {GUIDANCE}" in approval.arguments["body"]
    assert approval.arguments["to"] == ["tom@example.com"]
    approval_decide(approval=approval, user=superuser, decision="approved")
    assert run_task(second.pk) == TaskStatus.DONE

    second.refresh_from_db()
    assert f"Lessons applied: [m{lesson.pk}]" in second.result
    assert second.steps.get(kind="final").payload["citations"] == [lesson.pk]
    page = admin_client.get(reverse("tasks:detail", args=[second.pk])).content.decode()
    assert "Cited memories" in page
    assert f'data-memory="{lesson.pk}"' in page and "Include the self-service reset link" in page
    # The team's knowledge about password resets was recalled too (shown, not cited).
    assert "Recalled at the start" in page and "example.com/reset; the link is valid" in page
