"""create_task: a follow-up task for the same employee, created once per tool call."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from tasks.tools.registry import ToolContext


def execute(context: ToolContext, arguments: dict) -> dict:
    from tasks import services
    from tasks.models import Task, TaskSource

    due_at = None
    if arguments.get("due_at"):
        try:
            due_at = datetime.fromisoformat(arguments["due_at"])
        except ValueError:
            return {"error": f"due_at '{arguments['due_at']}' is not an ISO 8601 date and time."}
        if timezone.is_naive(due_at):
            due_at = timezone.make_aware(due_at, context.employee.tzinfo)
    prefix = f"followup:{context.task.pk}:"
    limit = context.scope.get("max_per_task")
    if (
        limit
        and Task.objects.filter(
            employee=context.employee, idempotency_key__startswith=prefix
        ).count()
        >= limit
    ):
        return {"error": f"At most {limit} follow-up tasks per task are allowed."}
    task, _ = services.task_create(
        employee=context.employee,
        title=arguments["title"],
        input=arguments["instructions"],
        source=TaskSource.FOLLOW_UP,
        due_at=due_at,
        requested_by_employee=context.employee,
        idempotency_key=prefix + context.call_id,
    )
    when = f" due {due_at:%Y-%m-%d %H:%M %Z}" if due_at else ""
    return {"task_id": task.pk, "summary": f"follow-up task #{task.pk} created{when}"}
