"""The evaluations page of an employee, and turning a finished task into a golden task."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from aiworkforce.audit import Actor
from employees.models import BriefVersion
from employees.selectors import employees_visible_to
from evaluations.activation import ActivationRefused, brief_version_activate
from evaluations.selectors import (
    brief_version_rows,
    can_manage,
    evaluation_history,
    golden_task_from,
)
from evaluations.services import (
    EvaluationRefused,
    evaluation_queue,
    evaluation_running,
    golden_task_from_task,
)
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
    return render(request, "evaluations/employee.html", _page_context(request, employee))


def _page_context(request, employee, **extra) -> dict:
    return {
        "employee": employee,
        **evaluation_history(employee),
        **_versions(request, employee),
        **extra,
    }


def _versions(request, employee) -> dict:
    running = evaluation_running(employee)
    return {
        "version_rows": brief_version_rows(employee),
        "may_manage": can_manage(request.user, employee),
        "golden_count": employee.golden_tasks.count(),
        "running": running,
        "running_done": running.results.count() if running else 0,
    }


def _versions_partial(request, employee, **extra) -> HttpResponse:
    context = {"employee": employee, **_versions(request, employee), **extra}
    return render(request, "evaluations/_versions.html", context)


@require_GET
def brief_versions_hx(request, handle: str) -> HttpResponse:
    """The versions card again: polled while an evaluation runs."""
    employee = get_object_or_404(employees_visible_to(request.user), handle=handle)
    return _versions_partial(request, employee)


@require_POST
def evaluate_brief_version(request, handle: str, number: int) -> HttpResponse:
    """Queue an evaluation of one version on the worker cluster (shadow: nothing happens)."""
    employee = get_object_or_404(employees_visible_to(request.user), handle=handle)
    get_object_or_404(BriefVersion, employee=employee, number=number)
    extra: dict = {}
    if not can_manage(request.user, employee):
        extra["activation_error"] = "Only this employee's managers can run its evaluations."
    else:
        try:
            evaluation_queue(employee=employee, brief_version=number, user=request.user)
            extra["queued"] = number
        except EvaluationRefused as exc:
            extra["activation_error"] = str(exc)
    if request.htmx:
        return _versions_partial(request, employee, **extra)
    if "queued" in extra:
        messages.success(request, f"The evaluation of v{number} is queued.")
    else:
        messages.error(request, extra["activation_error"])
    return redirect("evaluations:employee", handle=employee.handle)


@require_POST
def activate_brief_version(request, handle: str, number: int) -> HttpResponse:
    """Make a brief version live: the gate (pass rate at least the live one's) or a reason."""
    employee = get_object_or_404(employees_visible_to(request.user), handle=handle)
    version = get_object_or_404(BriefVersion, employee=employee, number=number)
    extra: dict = {}
    if not can_manage(request.user, employee):
        extra["activation_error"] = "Only this employee's managers can change its live brief."
    else:
        try:
            extra["activated"] = brief_version_activate(
                employee=employee,
                version=version,
                actor=Actor.for_user(request.user),
                user=request.user,
                override_reason=request.POST.get("override_reason", ""),
            )
        except ActivationRefused as exc:
            extra["activation_error"] = str(exc)
    if request.htmx:
        # A refusal is an answer to show in place, like an invalid form (htmx swaps only 2xx).
        return _versions_partial(request, employee, **extra)
    if "activated" in extra:
        messages.success(request, f"v{number} is now the live brief.")
    else:
        messages.error(request, extra["activation_error"])
    return redirect("evaluations:employee", handle=employee.handle)
