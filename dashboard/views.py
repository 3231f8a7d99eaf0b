"""The manager's dashboard at /: what needs me now, KPIs and charts."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest


@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    """Placeholder until the dashboard lands."""
    return render(request, "dashboard/dashboard.html", {})
