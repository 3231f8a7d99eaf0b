"""Reads of tasks: those a person may see (their teams' employees'), and linked request trees."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet
from django.http import Http404

from employees.models import TeamMembership
from tasks.models import Task

# How a page names an employee of a team the person is not in.
OTHER_TEAMS_EMPLOYEE = "another team's employee"


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
    from employees.memory.selectors import memories_still_visible
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


# --- linked requests: the tree a delegated task is part of --------------------------------------


def ancestors(task: Task) -> list[Task]:
    """The tasks above this one, nearest first (the depth limit keeps the chain short)."""
    chain, current = [], task
    while current.parent_id is not None:
        current = Task.objects.select_related("employee").get(pk=current.parent_id)
        chain.append(current)
    return chain


@dataclass
class TreeNode:
    task: Task
    level: int
    visible: bool
    relation: str  # "this", "parent", "sibling", "child", or "" for further relatives
    # What the page may show of it: a task of a team the person is not in keeps its status,
    # but not its title, nor who works on it.
    who: str = ""
    title: str = ""


def task_tree(task: Task, *, visible_ids: set[int] | None = None) -> list[TreeNode]:
    """The whole linked request this task is part of, depth first from its root."""
    root_id = task.root_id or task.pk
    tasks = list(
        Task.objects.filter(Q(pk=root_id) | Q(root=root_id))
        .select_related("employee")
        .order_by("pk")
    )
    if len(tasks) <= 1:
        return []
    by_parent: dict[int | None, list[Task]] = {}
    for item in tasks:
        by_parent.setdefault(item.parent_id if item.pk != root_id else None, []).append(item)
    nodes: list[TreeNode] = []

    def relation(item: Task) -> str:
        if item.pk == task.pk:
            return "this"
        if item.pk == task.parent_id:
            return "parent"
        if item.parent_id == task.pk:
            return "child"
        if task.parent_id is not None and item.parent_id == task.parent_id:
            return "sibling"
        return ""

    def walk(parent_id: int | None, level: int) -> None:
        for item in by_parent.get(parent_id, []):
            visible = visible_ids is None or item.pk in visible_ids
            who, title = (
                (f"@{item.employee.handle}", item.title) if visible else (OTHER_TEAMS_EMPLOYEE, "")
            )
            nodes.append(TreeNode(item, level, visible, relation(item), who, title))
            walk(item.pk, level + 1)

    walk(None, 0)
    return nodes


def task_tree_for(user, task: Task) -> list[TreeNode]:
    """The linked requests of a task (its whole tree), marking those the person may open."""
    root_id = task.root_id or task.pk
    visible = set(
        tasks_visible_to(user).filter(Q(pk=root_id) | Q(root=root_id)).values_list("pk", flat=True)
    )
    return task_tree(task, visible_ids=visible)


def tree_is_live(nodes: list[TreeNode]) -> bool:
    return any(not node.task.is_finished for node in nodes)
