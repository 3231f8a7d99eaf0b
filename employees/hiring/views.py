"""Hiring an employee at /employees/hire/: from a role template or blank."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest


@require_GET
def hire(request: HtmxHttpRequest) -> HttpResponse:
    """Placeholder until hiring lands."""
    return render(request, "employees/hiring/hire.html", {})
