"""Pages about the workforce."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest
from employees.forms import DirectoryFilterForm
from employees.selectors import employee_directory, teams_visible_to


@require_GET
def directory(request: HtmxHttpRequest) -> HttpResponse:
    """The employee directory; filters and search swap only the list when asked by htmx."""
    teams = list(teams_visible_to(request.user))
    form = DirectoryFilterForm(request.GET or None, teams=teams)
    filters = form.cleaned_data if form.is_valid() else {}
    employees = employee_directory(
        request.user,
        team_id=filters.get("team"),
        status=filters.get("status", ""),
        query=(filters.get("q") or "").strip(),
    )
    context = {
        "form": form,
        "employees": employees,
        "has_teams": bool(teams),
        "filtered": any(filters.get(name) for name in ("team", "status", "q")),
    }
    template = "employees/directory.html"
    if request.htmx and not request.htmx.boosted:
        template += "#employee-list"
    return render(request, template, context)
