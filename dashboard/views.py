"""The manager's dashboard at /: what needs me now, KPIs and charts."""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils.dateformat import format as format_date
from django.views.decorators.http import require_GET

from aiworkforce.http import HtmxHttpRequest
from dashboard.forms import KpiFilterForm
from dashboard.selectors import (
    DEFAULT_PERIOD,
    PERIODS,
    KpiScope,
    Period,
    daily_series,
    kpi_scope,
    kpis,
    needs_me,
    outcomes_by_employee,
)
from employees.selectors import employees_visible_to, teams_visible_to


def _refused(form: KpiFilterForm) -> HttpResponse:
    """A swap asked for a period or scope that does not exist: say why (request-errors.js shows it)."""
    return HttpResponseBadRequest(form.error_text(), content_type="text/plain; charset=utf-8")


def _chart_data(days, outcomes, daily_budget) -> dict:
    """What dashboard.js draws, as plain numbers (json_script), the same as the tables show."""
    return {
        "days": {
            "labels": [format_date(row.day, "D j M") for row in days],
            "done": [row.done for row in days],
            "failed": [row.failed for row in days],
            "cancelled": [row.cancelled for row in days],
            "spent": [round(float(row.spent), 4) for row in days],
            "budget": round(float(daily_budget), 4),
        },
        "employees": {
            "labels": [row.employee.name for row in outcomes.rows],
            "done": [row.done for row in outcomes.rows],
            "failed": [row.failed for row in outcomes.rows],
            "cancelled": [row.cancelled for row in outcomes.rows],
        },
    }


def _figures(scope: KpiScope, period: Period) -> dict:
    days = daily_series(scope, period)
    outcomes = outcomes_by_employee(scope, period)
    return {
        "kpis": kpis(scope, period),
        "days": days,
        "outcomes": outcomes,
        "chart_data": _chart_data(days, outcomes, scope.daily_budget),
    }


@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    """What needs me now, then the KPIs and charts of a period and scope; switching the period
    or scope swaps only the figures (htmx) and keeps the choice in the URL."""
    teams = list(teams_visible_to(request.user).order_by("name"))
    employees = list(employees_visible_to(request.user).order_by("name"))
    form = KpiFilterForm(request.GET)
    swap = bool(request.htmx) and not request.htmx.boosted
    context: dict = {"form": form, "teams": teams, "employees": employees, "periods": PERIODS}
    status = 200
    if form.is_valid():
        period = PERIODS[form.cleaned_data["period"]]
        scope = kpi_scope(
            teams=teams,
            employees=employees,
            team_id=form.cleaned_data["team"],
            handle=form.cleaned_data["employee"],
        )
        context.update(period=period, scope=scope, **_figures(scope, period))
    elif swap:
        return _refused(form)
    else:
        context.update(error=form.error_text(), period=PERIODS[DEFAULT_PERIOD])
        status = 400
    if swap:
        return render(request, "dashboard/dashboard.html#kpis", context)
    context["needs"] = needs_me(request.user, employees=employees)
    return render(request, "dashboard/dashboard.html", context, status=status)


@require_GET
def kpis_hx(request: HtmxHttpRequest) -> HttpResponse:
    """The KPI cards alone (?period=today|7d|30d&team=ID&employee=HANDLE), for other pages to embed."""
    form = KpiFilterForm(request.GET)
    if not form.is_valid():
        return _refused(form)
    team_id, handle = form.cleaned_data["team"], form.cleaned_data["employee"]
    teams = teams_visible_to(request.user)
    employees = employees_visible_to(request.user)
    # Only the rows the scope can need: an embed for one employee reads one employee.
    if handle:
        employees = employees.filter(handle=handle.lstrip("@"))
    elif team_id is not None:
        employees = employees.filter(team_id=team_id)
    scope = kpi_scope(
        teams=list(teams.filter(pk=team_id)) if team_id is not None else [],
        employees=list(employees),
        team_id=team_id,
        handle=handle,
    )
    period = PERIODS[form.cleaned_data["period"]]
    context = {
        "scope": scope,
        "period": period,
        "periods": PERIODS,
        "kpis": kpis(scope, period),
        "team_id": team_id or "",
        "handle": scope.employee.handle if scope.employee else "",
    }
    return render(request, "dashboard/_kpis_embed.html", context)
