"""Reads of tasks, scoped to what a person may see: the tasks of their teams' employees."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from employees.models import TeamMembership
from tasks.delegation import OTHER_TEAMS_EMPLOYEE, TreeNode, task_tree
from tasks.models import Task


def tasks_visible_to(user) -> QuerySet[Task]:
    qs = Task.objects.select_related("employee", "employee__team", "requested_by_employee")
    if user.is_superuser:
        return qs
    return qs.filter(employee__team__in=TeamMembership.objects.filter(user=user).values("team"))


def task_for_user(user, pk: int) -> Task:
    """The task if the person may see it; 404 otherwise (never 403, which would confirm it exists)."""
    task = tasks_visible_to(user).filter(pk=pk).first()
    if task is None:
        raise Http404("No such task.")
    return task


def task_memories(task: Task, steps: list) -> dict:
    """What the task recalled and which of it the final answer cited (for the task page).

    The texts are the ones the employee saw then; `forgotten` marks memories deleted since
    (or no longer the employee's to recall: of a team it has left).
    """
    from employees.memory import memories_still_visible
    from tasks.context import recall_tool_memories
    from tasks.models import StepKind

    shown: dict[int, dict] = {}
    recalled: list[dict] = []
    citations: list[int] = []
    for step in steps:
        payload = step.payload
        if step.kind == StepKind.LLM_CALL and "recalled" in payload:
            recalled = payload["recalled"]
            shown.update((m["id"], m) for m in recalled)
        elif step.kind == StepKind.FINAL:
            citations = payload.get("citations", [])
    shown.update((m["id"], m) for m in recall_tool_memories(steps))
    ids = set(shown) | set(citations)
    existing = memories_still_visible(employee=task.employee, ids=ids)
    cited = [
        {**shown.get(pk, {"id": pk, "kind": "", "text": ""}), "forgotten": pk not in existing}
        for pk in citations
    ]
    return {
        "recalled": [
            {**m, "cited": m["id"] in citations, "forgotten": m["id"] not in existing}
            for m in recalled
        ],
        "citations": cited,
    }


def task_requester_for(user, task: Task) -> str:
    """Who delegated the task, as the person may see it: a handle only within their teams."""
    requester = task.requested_by_employee
    if requester is None:
        return ""
    if (
        user.is_superuser
        or TeamMembership.objects.filter(user=user, team=requester.team_id).exists()
    ):
        return f"@{requester.handle}"
    return OTHER_TEAMS_EMPLOYEE


def task_tree_for(user, task: Task) -> list[TreeNode]:
    """The linked requests of a task (its whole tree), marking those the person may open."""
    root_id = task.root_id or task.pk
    visible = set(
        tasks_visible_to(user).filter(Q(pk=root_id) | Q(root=root_id)).values_list("pk", flat=True)
    )
    return task_tree(task, visible_ids=visible)
