"""Episodes: what an employee did on a task, remembered when the task ends.

The episode is written by the statement that records the final answer (one more CTE, no extra
round trip), so it exists exactly when the task is done. It expires after the employee's
retention for episodes (MEMORY_RETENTION_DAYS, 90 days by default). Its creation is audited by
the task.completed entry of the same statement.
"""

from __future__ import annotations

import json

from django.utils import timezone

from employees.embeddings import get_embedder
from employees.memory import (
    MEMORY_TEXT_MAX,
    check_embedding_dimensions,
    expiry_for,
    vector_literal,
)
from employees.models import MemoryKind
from tasks.models import Task
from tasks.steps import Part

EPISODE_INSERT = (
    "INSERT INTO employees_memoryentry (scope, employee_id, kind, text, embedding, embedder, "
    "source, details, source_task_id, live, pinned, expires_at, created_at, updated_at) "
    "SELECT 'employee', %s, 'episode', %s, %s::vector, %s, %s, %s::jsonb, %s, true, false, %s, "
    "now(), now()"
)


def episode_text(task: Task, result: str) -> str:
    head = f"Task #{task.pk} {json.dumps(task.title, ensure_ascii=False)} on {timezone.now():%Y-%m-%d}: "
    return (head + result)[:MEMORY_TEXT_MAX]


def episode_part(*, task: Task, result: str, when: str) -> tuple[list[Part], bool]:
    """The CTE that remembers this task's outcome, and whether it is embedded already."""
    check_embedding_dimensions()
    text = episode_text(task, result)
    embedder = get_embedder()
    vector = vector_literal(embedder.embed([text])[0]) if embedder.local else None
    params = [
        task.employee_id,
        text,
        vector,
        embedder.name if vector else "",
        f"task #{task.pk}",
        json.dumps({"status": "done"}),
        task.pk,
        expiry_for(kind=MemoryKind.EPISODE, employee=task.employee),
    ]
    return [("episode", f"{EPISODE_INSERT} WHERE {when}", params)], vector is not None
