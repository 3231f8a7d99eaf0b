"""The shadow report at /evaluations/<handle>/shadow/: proposals next to what people did.

Anyone who may see the employee sees its report (404 otherwise) and may record what they did
with a proposal nobody has compared yet.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from aiworkforce.http import HtmxHttpRequest
from employees.models import Employee
from employees.selectors import employees_visible_to
from evaluations.shadow import shadow_proposal_for, shadow_report
from evaluations.shadow_services import shadow_proposal_review

TEMPLATE = "evaluations/shadow_report.html"


def _visible_employee(request: HtmxHttpRequest, handle: str) -> Employee:
    employee = employees_visible_to(request.user).filter(handle=handle).first()
    if employee is None:
        raise Http404("No such employee.")
    return employee


@require_GET
def shadow_report_page(request: HtmxHttpRequest, handle: str) -> HttpResponse:
    """Agreement with people per week, the divergent cases, and proposals still to compare."""
    employee = _visible_employee(request, handle)
    return render(request, TEMPLATE, {"employee": employee, "report": shadow_report(employee)})


@require_POST
def shadow_review(request: HtmxHttpRequest, handle: str, step_id: int) -> HttpResponse:
    """Record what the person did with one proposal: the same, or something else (said how)."""
    employee = _visible_employee(request, handle)
    step = shadow_proposal_for(employee, step_id)
    if step is None:
        raise Http404("No such proposal.")
    verdict = request.POST.get("verdict", "")
    action = request.POST.get("action", "")
    error = ""
    if verdict not in ("same", "different"):
        error = "Choose: you did the same, or something else."
    else:
        try:
            shadow_proposal_review(
                step=step, user=request.user, agrees=verdict == "same", action=action
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
    if not request.htmx and not error:
        return redirect("evaluations:shadow_report", handle=employee.handle)
    context = {
        "employee": employee,
        "report": shadow_report(employee),
        "review_error": error,
        "review_step": step_id,
        "typed_action": action,
    }
    return render(request, f"{TEMPLATE}#shadow-body" if request.htmx else TEMPLATE, context)
