"""An employee's profile at /employees/<handle>/: who it is, what it may do, what it is doing.

Viewers (members of the employee's team) see the page; its managers also assign work and
change the lifecycle. Every change goes through a service; refusals are shown, never a 500.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from aiworkforce.audit import Actor
from aiworkforce.http import HtmxHttpRequest
from employees.models import Employee, EmployeeStatus
from employees.profile.selectors import (
    BriefDiffError,
    brief_diff,
    employee_for_profile,
    may_manage,
    profile_context,
    work_now,
)
from employees.services import (
    TRANSITIONS,
    TransitionError,
    employee_activate,
    employee_offboard,
    employee_pause,
    employee_transition,
)
from evaluations.shadow import shadow_report
from tasks.models import TaskSource
from tasks.services import TaskRefused, task_create

TEMPLATE = "employees/profile.html"
TASK_STATUSES_TAKING_WORK = {EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW, EmployeeStatus.PAUSED}
MAX_INSTRUCTIONS = 20_000


def _managed_employee(request: HtmxHttpRequest, handle: str) -> Employee:
    """The employee if the person manages it; 404 if they may not see it, 403 if only see it."""
    employee = employee_for_profile(request.user, handle)
    if not may_manage(request.user, employee):
        raise PermissionDenied(
            "Only the team's managers and the employee's accountable person can do this."
        )
    return employee


def _status_context(employee: Employee, **extra) -> dict:
    return {
        "employee": employee,
        "can_manage": True,
        "moves": TRANSITIONS[employee.status],
        "takes_work": employee.status in TASK_STATUSES_TAKING_WORK,
        **extra,
    }


@require_GET
def profile(request: HtmxHttpRequest, handle: str) -> HttpResponse:
    """The whole profile; ?a=&b= picks the two brief versions compared (without JavaScript)."""
    employee = employee_for_profile(request.user, handle)
    context = profile_context(employee, user=request.user)
    context["moves"] = TRANSITIONS[employee.status]
    context["takes_work"] = employee.status in TASK_STATUSES_TAKING_WORK
    if request.GET.get("a") or request.GET.get("b"):
        try:
            context["diff"] = brief_diff(employee, request.GET.get("a"), request.GET.get("b"))
        except BriefDiffError as exc:
            context["diff"], context["diff_error"] = None, str(exc)
    return render(request, TEMPLATE, context)


@require_GET
def profile_now_hx(request: HtmxHttpRequest, handle: str) -> HttpResponse:
    """What the employee is doing now; polled by the page while it has open work."""
    employee = employee_for_profile(request.user, handle)
    return render(
        request, f"{TEMPLATE}#profile-now", {"employee": employee, "now": work_now(employee)}
    )


@require_GET
def profile_brief_diff_hx(request: HtmxHttpRequest, handle: str) -> HttpResponse:
    """The difference between two brief versions (?a=N&b=M), as lines added and removed."""
    employee = employee_for_profile(request.user, handle)
    context = {"employee": employee, "diff": None, "diff_error": ""}
    try:
        context["diff"] = brief_diff(employee, request.GET.get("a"), request.GET.get("b"))
    except BriefDiffError as exc:
        context["diff_error"] = str(exc)
    return render(request, f"{TEMPLATE}#brief-diff", context)


@require_POST
def profile_assign(request: HtmxHttpRequest, handle: str) -> HttpResponse:
    """Give the employee a task, as a person assigns one (source: manual)."""
    employee = _managed_employee(request, handle)
    title = request.POST.get("title", "")
    instructions = request.POST.get("instructions", "")
    urgent = request.POST.get("urgent") == "on"
    error, task = "", None
    if len(instructions) > MAX_INSTRUCTIONS:
        error = f"Keep the instructions under {MAX_INSTRUCTIONS:,} characters (or attach them as knowledge)."
    else:
        try:
            task, _ = task_create(
                employee=employee,
                title=title,
                input=instructions,
                source=TaskSource.MANUAL,
                requested_by_user=request.user,
                urgent=urgent,
            )
        except TaskRefused as exc:
            error = str(exc)
        except ValidationError as exc:
            error = " ".join(exc.messages)
    if task is not None:
        task.refresh_from_db(fields=["status", "status_reason"])
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(request, _assigned_message(employee, task))
        return redirect("employees:profile", handle=employee.handle)
    context = _status_context(employee, assign_error=error, assigned=task)
    if error:
        context.update(typed_title=title, typed_instructions=instructions, typed_urgent=urgent)
        return render(request, f"{TEMPLATE}#profile-assign", context)
    # The new task also appears under "Doing now" (an out-of-band swap of that section).
    now = render_to_string(
        f"{TEMPLATE}#profile-now",
        {"employee": employee, "now": work_now(employee), "oob": True},
        request=request,
    )
    assign = render_to_string(f"{TEMPLATE}#profile-assign", context, request=request)
    return HttpResponse(assign + now)


def _promotes_without_confirmation(employee: Employee, to: str, request) -> bool:
    return (
        employee.status == EmployeeStatus.SHADOW
        and to == EmployeeStatus.ACTIVE
        and request.POST.get("confirm") != "yes"
    )


def _promote_confirm(request: HtmxHttpRequest, employee: Employee) -> HttpResponse:
    """Before a shadow employee goes live: its shadow report's summary, and a confirm button."""
    promote = shadow_report(employee, with_cases=False)
    if request.htmx:
        context = _status_context(employee, promote=promote)
        return render(request, f"{TEMPLATE}#profile-status", context)
    context = profile_context(employee, user=request.user)
    context.update(
        moves=TRANSITIONS[employee.status],
        takes_work=employee.status in TASK_STATUSES_TAKING_WORK,
        promote=promote,
    )
    return render(request, TEMPLATE, context)


def _assigned_message(employee: Employee, task) -> str:
    reason = f" — {task.status_reason}" if task.status_reason else ""
    return f"Assigned task #{task.pk} to {employee.name}: {task.get_status_display()}{reason}"


@require_POST
def profile_status(request: HtmxHttpRequest, handle: str) -> HttpResponse:
    """Activate, shadow, pause, resume or offboard (offboarding needs a reason and a tick)."""
    employee = _managed_employee(request, handle)
    to = request.POST.get("to", "")
    reason = request.POST.get("reason", "").strip()
    actor = Actor.for_user(request.user)
    error = ""
    if to not in (
        EmployeeStatus.ACTIVE,
        EmployeeStatus.SHADOW,
        EmployeeStatus.PAUSED,
        EmployeeStatus.OFFBOARDED,
    ):
        error = "Choose what to do: activate, shadow mode, pause or offboard."
    elif to == EmployeeStatus.OFFBOARDED and not reason:
        error = f"Say why {employee.name} is offboarded; the reason is kept in its history."
    elif to == EmployeeStatus.OFFBOARDED and request.POST.get("confirm") != "yes":
        error = f"Tick the box to confirm: offboarding {employee.name} cannot be undone."
    elif len(reason) > 500:
        error = "Keep the reason under 500 characters."
    elif _promotes_without_confirmation(employee, to, request):
        return _promote_confirm(request, employee)
    else:
        try:
            if to == EmployeeStatus.ACTIVE:
                employee_activate(employee=employee, actor=actor)
            elif to == EmployeeStatus.PAUSED:
                who = request.user.get_full_name() or request.user.get_username()
                employee_pause(employee=employee, actor=actor, reason=reason or f"Paused by {who}.")
            elif to == EmployeeStatus.OFFBOARDED:
                employee_offboard(employee=employee, actor=actor, reason=reason)
            else:
                employee_transition(employee=employee, to=to, actor=actor, reason=reason)
        except TransitionError as exc:
            error = str(exc)
    if error:
        if not request.htmx:
            messages.error(request, error)
            return redirect("employees:profile", handle=employee.handle)
        context = _status_context(employee, status_error=error, typed_reason=reason, tried=to)
        return render(request, f"{TEMPLATE}#profile-status", context)
    messages.success(request, f"{employee.name} is now {employee.get_status_display().lower()}.")
    # A lifecycle change touches most of the page (work, duties, tools): load it again.
    if request.htmx:
        return HttpResponseClientRefresh()
    return redirect("employees:profile", handle=employee.handle)
