"""recall and remember: the employee's own long-term memory, scoped to it and its team."""

from __future__ import annotations

from tasks.tools.registry import ToolContext

# Lessons come only from people's decisions and document chunks only from uploads, so nothing
# the model reads (an email, a web page) can write itself into guidance.
REMEMBERABLE_KINDS = ["fact", "episode"]


def recall(context: ToolContext, arguments: dict) -> dict:
    from employees.memory.recall import memory_recall

    kind = arguments.get("kind")
    memories = memory_recall(
        employee=context.employee,
        query=arguments["query"],
        k=arguments.get("k", 5),
        kinds=[kind] if kind else None,
    )
    return {
        "memories": [
            {
                "id": m.id,
                "cite_as": f"[m{m.id}]",
                "kind": m.kind,
                "text": m.text,
                "source": m.source,
            }
            for m in memories
        ],
        "summary": f"{len(memories)} memories recalled" if memories else "nothing remembered",
    }


def check_remember_scope(arguments: dict, scope: dict) -> str | None:
    if arguments.get("share_with_team") and not scope.get("allow_team"):
        return "This grant keeps memories private: it does not allow sharing with the team."
    return None


def remember(context: ToolContext, arguments: dict) -> dict:
    from aiworkforce.audit import Actor
    from employees.memory.services import memory_remember

    share = bool(arguments.get("share_with_team"))
    memory = memory_remember(
        kind=arguments.get("kind", "fact"),
        text=arguments["text"],
        employee=None if share else context.employee,
        team=context.employee.team if share else None,
        source=f"task #{context.task.pk}",
        source_task=context.task,
        actor=Actor.for_employee(context.employee),
    )
    where = "the team's memory" if share else "memory"
    return {"memory_id": memory.pk, "summary": f"saved to {where} as [m{memory.pk}]"}
