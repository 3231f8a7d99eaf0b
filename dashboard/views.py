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


@require_GET
def kpis_hx(request: HtmxHttpRequest) -> HttpResponse:
    """The KPI cards alone (?period=today|7d|30d&team=ID&employee=HANDLE), for other pages to embed."""
    return HttpResponse("")
