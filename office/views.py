"""The live office floor at /office/: every desk's state, refreshed without reload."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest


@require_GET
def office_floor(request: HtmxHttpRequest) -> HttpResponse:
    """Placeholder until the office floor lands."""
    return render(request, "office/floor.html", {})
