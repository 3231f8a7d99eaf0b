"""An employee's profile page at /employees/<handle>/."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest
from employees.selectors import employees_visible_to


@require_GET
def profile(request: HtmxHttpRequest, handle: str) -> HttpResponse:
    """Placeholder until the profile lands."""
    employee = employees_visible_to(request.user).filter(handle=handle).first()
    if employee is None:
        raise Http404("No such employee.")
    return render(request, "employees/profile.html", {"employee": employee})
