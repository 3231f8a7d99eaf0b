"""Pages about the workforce."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest
from employees.forms import DirectoryFilterForm, OrgChartFilterForm
from employees.hiring.selectors import teams_managed_by
from employees.selectors import employee_directory, org_chart, teams_visible_to


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
    else:
        context["can_hire"] = teams_managed_by(request.user).exists()
    return render(request, template, context)


@require_GET
def org_chart_page(request: HtmxHttpRequest) -> HttpResponse:
    """Teams, people and AI managers, reporting and collaboration lines, live status.

    The chart refreshes itself through htmx; the team filter swaps only the chart.
    """
    teams = list(teams_visible_to(request.user))
    form = OrgChartFilterForm(request.GET or None, teams=teams)
    team_id = form.cleaned_data.get("team") if form.is_valid() else None
    context = {
        "form": form,
        "chart": org_chart(request.user, team_id=team_id),
        "has_teams": bool(teams),
        "query": request.GET.urlencode(),
    }
    template = "employees/org_chart.html"
    if request.htmx and not request.htmx.boosted:
        template += "#org-chart"
    return render(request, template, context)
