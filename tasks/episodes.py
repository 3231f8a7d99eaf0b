"""Episodes: what an employee did on a task, remembered when the task ends.

The episode is written by the statement that records the final answer (one more CTE, no extra
round trip), so it exists exactly when the task is done. It expires after the employee's
retention for episodes (MEMORY_RETENTION_DAYS, 90 days by default). Its creation is audited by
the task.completed entry of the same statement.

Its vector comes a moment later, from the embedding job (`request_embedding`): inserting into
the HNSW index costs about a millisecond whatever the index's size (the new element's
neighbours are re-linked), which would be a fifth of the loop's whole database time per task.
Until then the episode is stored and listed, not yet recalled.
"""

from __future__ import annotations

import json

from django.utils import timezone

from employees.memory.services import MEMORY_TEXT_MAX, expiry_for
from employees.models import MemoryKind
from tasks.models import Task
from tasks.steps import Part

EPISODE_INSERT = (
    "INSERT INTO employees_memoryentry (scope, employee_id, kind, text, embedding, embedder, "
    "source, details, source_task_id, live, pinned, expires_at, created_at, updated_at) "
    "SELECT 'employee', %s, 'episode', %s, NULL, '', %s, %s::jsonb, %s, true, false, %s, "
    "now(), now()"
)


def episode_text(task: Task, result: str) -> str:
    head = f"Task #{task.pk} {json.dumps(task.title, ensure_ascii=False)} on {timezone.now():%Y-%m-%d}: "
    return (head + result)[:MEMORY_TEXT_MAX]


def episode_part(*, task: Task, result: str, when: str) -> list[Part]:
    """The CTE that remembers this task's outcome (its vector is added by the embedding job)."""
    params = [
        task.employee_id,
        episode_text(task, result),
        f"task #{task.pk}",
        json.dumps({"status": "done"}),
        task.pk,
        expiry_for(kind=MemoryKind.EPISODE, employee=task.employee),
    ]
    return [("episode", f"{EPISODE_INSERT} WHERE {when}", params)]
