"""The evaluations page of an employee, and turning a finished task into a golden task."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from employees.selectors import employees_visible_to
from evaluations.selectors import can_manage, evaluation_history, golden_task_from
from evaluations.services import golden_task_from_task
from tasks.models import TaskSource, TaskStatus
from tasks.selectors import task_for_user


def _golden_context(request, task) -> dict:
    return {
        "task": task,
        "golden": golden_task_from(task.pk),
        "eligible": task.status == TaskStatus.DONE and task.source != TaskSource.EVALUATION,
        "may_manage": can_manage(request.user, task.employee),
    }


@require_GET
def golden_button_hx(request, pk: int) -> HttpResponse:
    """The task page's "Make it a golden task" button (only for its employee's managers)."""
    task = task_for_user(request.user, pk)
    return render(request, "evaluations/_golden_button.html", _golden_context(request, task))


@require_POST
def golden_from_task(request, pk: int) -> HttpResponse:
    """One click: the finished task's input, and the calls it made, become a golden task."""
    task = task_for_user(request.user, pk)
    context = _golden_context(request, task)
    if not context["may_manage"]:
        context["error"] = "Only this employee's managers can add golden tasks."
        return render(request, "evaluations/_golden_button.html", context, status=403)
    if context["golden"] is None:
        try:
            context["golden"] = golden_task_from_task(task=task, user=request.user)
        except ValidationError as exc:
            context["error"] = " ".join(exc.messages)
            return render(request, "evaluations/_golden_button.html", context, status=400)
    if request.htmx:
        return render(request, "evaluations/_golden_button.html", context)
    return redirect("evaluations:employee", handle=task.employee.handle)


@require_GET
def employee_evaluations(request, handle: str) -> HttpResponse:
    """Pass rates per brief version over time, and the latest run's failing cases."""
    employee = get_object_or_404(employees_visible_to(request.user), handle=handle)
    context = {"employee": employee, **evaluation_history(employee)}
    return render(request, "evaluations/employee.html", context)
