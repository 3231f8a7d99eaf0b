"""Hiring an employee at /employees/hire/: from a role template or blank, step by step.

The draft lives in the form posts (employees.hiring.wizard), never in a half-created employee:
the employee is created, in shadow mode unless chosen otherwise, by the last step. Only
managers of a team (and superusers) may hire into it, export it or import into it; the page
tells everyone else why not (403), and a team they do not manage is a 404.
"""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime
from functools import lru_cache

from croniter import croniter
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from aiworkforce.http import HtmxHttpRequest
from employees.hiring import wizard
from employees.hiring.catalogue import template, templates
from employees.hiring.selectors import team_file, teams_managed_by
from employees.hiring.services import ImportRefused, employee_hire, team_import, template_hire_team
from employees.hiring.spec import POLICIES, SpecError, load_employee
from employees.models import Employee, EmployeeStatus, ToolPolicy
from employees.validators import validate_cron, validate_timezone
from tasks.tools import all_tools

TEMPLATE = "employees/hiring/hire.html"


@lru_cache(maxsize=1)
def _timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _not_allowed(request) -> HttpResponse:
    return render(request, "employees/hiring/not_allowed.html", status=403)


def _managed(request) -> list:
    return list(teams_managed_by(request.user))


def next_runs(cron: str, tz: str, *, count: int = 5, now: datetime | None = None):
    """(the next `count` run times in `tz`, "") or ([], why the schedule cannot run)."""
    try:
        validate_cron(cron)
        validate_timezone(tz)
    except ValidationError as exc:
        return [], " ".join(exc.messages)
    local = (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(tz))
    schedule = croniter(cron, local)
    runs = [schedule.get_next(datetime) for _ in range(count)]
    # Formatted here: the template's date filter would move them to the viewer's time zone.
    return [(run.isoformat(), f"{run:%a} {run.day} {run:%b %Y, %H:%M}") for run in runs], ""


def _db_errors(draft: dict, teams: list) -> list[tuple[str, str]]:
    """What the brief step needs the database for: the team, the handle, the reporting line."""
    errors = []
    if str(draft.get("team") or "") not in {str(team.pk) for team in teams}:
        errors.append(("Team", "pick one of the teams you manage."))
    handle = (draft.get("handle") or "").lstrip("@")
    if handle and Employee.objects.filter(handle=handle).exists():
        errors.append(
            ("Handle", f"another employee already has the handle '{handle}'; pick a different one.")
        )
    boss = draft.get("reports_to") or ""
    if boss and not Employee.objects.filter(team__in=teams, handle=boss).exists():
        errors.append(("Reports to", f"@{boss} is not an employee of a team you manage."))
    return errors


def _delegation_notices(draft: dict) -> list[str]:
    """SOP steps that delegate to someone not hired yet (the delegation would be refused)."""
    wanted = {}
    for number, row in enumerate(draft.get("sop") or [], start=1):
        hint = row.get("tool") or {}
        to = str((hint.get("arguments") or {}).get("to") or "").lstrip("@")
        if hint.get("name") == "delegate" and to and "{" not in to:
            wanted.setdefault(to, number)
    found = set(Employee.objects.filter(handle__in=wanted).values_list("handle", flat=True))
    return [
        f"SOP step {number} delegates to @{handle}, who is not hired yet: hire them too "
        "(a team template's \u201cHire all\u201d does it at once), or the request will be refused."
        for handle, number in wanted.items()
        if handle not in found
    ]


def _wizard_context(request, draft: dict, step: str, errors: list, teams: list) -> dict:
    granted = [row.get("tool") for row in draft.get("tools") or [] if row.get("tool")]
    index = wizard.STEP_NAMES.index(step)
    context = {
        "draft": draft,
        "draft_json": json.dumps(draft),
        "step": step,
        "step_template": f"employees/hiring/_step_{step}.html",
        "steps": [
            {
                "name": name,
                "label": label,
                "number": n + 1,
                "current": n == index,
                "done": n < index,
            }
            for n, (name, label) in enumerate(wizard.STEPS)
        ],
        "previous": wizard.STEP_NAMES[index - 1] if index else "",
        "next": wizard.STEP_NAMES[index + 1] if index + 1 < len(wizard.STEPS) else "",
        "errors": errors,
        "teams": teams,
        "colleagues": Employee.objects.filter(team__in=teams)
        .exclude(status=EmployeeStatus.OFFBOARDED)
        .select_related("team")
        .order_by("team__name", "name"),
        "all_tools": [tool for tool in all_tools() if tool.name not in granted],
        "granted": granted,
        "policies": [(value, ToolPolicy(value).label) for value in POLICIES],
        "employee_tz": (draft.get("working_hours") or {}).get("timezone") or "UTC",
    }
    if step == "tools":
        context["tool_rows"] = wizard.tool_rows(draft, errors)
    elif step == "sop":
        context["sop_rows"] = wizard.sop_rows(draft, errors)
    elif step == "hours":
        context["window_rows"] = wizard.window_rows(draft)
        context["timezones"] = _timezones()
    elif step == "duties":
        context["duty_rows"] = [
            {
                "index": i,
                "duty": duty,
                "tz": duty.get("timezone") or context["employee_tz"],
                "runs": next_runs(
                    duty.get("cron", ""), duty.get("timezone") or context["employee_tz"]
                ),
            }
            for i, duty in enumerate(draft.get("duties") or [])
        ]
        context["timezones"] = _timezones()
    elif step == "review":
        context["review"] = wizard.review(draft)
        try:
            load_employee(draft)
            context["problems"] = _db_errors(draft, teams)
        except SpecError as exc:
            context["problems"] = exc.errors + _db_errors(draft, teams)
        context["team"] = next((t for t in teams if str(t.pk) == str(draft.get("team"))), None)
        context["notices"] = _delegation_notices(draft)
    return context


def _render_wizard(request, draft, step, errors, teams, status=200) -> HttpResponse:
    context = _wizard_context(request, draft, step, errors, teams)
    if request.htmx:
        return render(request, f"{TEMPLATE}#wizard", context, status=status)
    return render(
        request,
        TEMPLATE,
        {**_landing_context(request, teams), **context, "wizard": True},
        status=status,
    )


def _landing_context(request, teams: list) -> dict:
    return {"templates": templates(), "teams": teams, "can_create_teams": request.user.is_superuser}


@require_GET
def hire(request: HtmxHttpRequest) -> HttpResponse:
    """The hire page: the catalogue of role templates, a blank start, teams as files."""
    teams = _managed(request)
    if not teams:
        return _not_allowed(request)
    return render(request, TEMPLATE, _landing_context(request, teams))


@require_POST
def hire_start(request: HtmxHttpRequest) -> HttpResponse:
    """Open the hire form at its first step, filled from a template's employee or blank."""
    teams = _managed(request)
    if not teams:
        return _not_allowed(request)
    slug = request.POST.get("template") or ""
    draft = wizard.blank_draft()
    if slug:
        found = template(slug)
        if found is None:
            raise Http404("No such role template.")
        try:
            member = found.raw["employees"][int(request.POST.get("member") or 0)]
        except (IndexError, ValueError):
            raise Http404("No such employee in this template.") from None
        draft = wizard.draft_from_spec(member)
        draft["template"] = found.title
        # A reporting line to someone who is not in your teams is left for you to choose.
        boss = draft.get("reports_to") or ""
        if boss and not Employee.objects.filter(team__in=teams, handle=boss).exists():
            draft["reports_to"] = ""
    draft["team"] = str(teams[0].pk)
    return _render_wizard(request, draft, "brief", [], teams)


@require_POST
def hire_step_hx(request: HtmxHttpRequest) -> HttpResponse:
    """Move between the steps (keeping what was typed) or add, remove and move rows."""
    teams = _managed(request)
    if not teams:
        return _not_allowed(request)
    draft = wizard.draft_from_post(request.POST)
    step = request.POST.get("step")
    if step not in wizard.STEP_NAMES:
        step = "brief"
    errors = wizard.read_step(step, request.POST, draft)
    op, go = request.POST.get("op") or "", request.POST.get("go") or ""
    if op or go not in wizard.STEP_NAMES:
        wizard.apply_op(op, request.POST, draft)
        return _render_wizard(request, draft, step, errors, teams)
    if wizard.STEP_NAMES.index(go) > wizard.STEP_NAMES.index(step):
        errors += wizard.step_errors(step, draft)
        if step == "brief":
            errors += _db_errors(draft, teams)
        if errors:
            return _render_wizard(request, draft, step, errors, teams, status=200)
    return _render_wizard(request, draft, go, [], teams)


@require_GET
def hire_cron_hx(request: HtmxHttpRequest) -> HttpResponse:
    """The next five runs of a duty's schedule in its time zone, as it is typed."""
    row = request.GET.get("row", "0")
    cron = " ".join((request.GET.get(f"duty-{row}-cron") or "").split())
    tz = (request.GET.get(f"duty-{row}-timezone") or "").strip() or (
        request.GET.get("employee_tz") or "UTC"
    )
    runs, problem = next_runs(cron, tz)
    return render(
        request,
        "employees/hiring/_cron_preview.html",
        {"row": {"index": row, "runs": (runs, problem), "tz": tz}},
    )


@require_POST
def hire_submit(request: HtmxHttpRequest) -> HttpResponse:
    """Hire the employee the draft describes (shadow mode unless chosen otherwise)."""
    teams = _managed(request)
    if not teams:
        return _not_allowed(request)
    draft = wizard.draft_from_post(request.POST)
    wizard.read_step("review", request.POST, draft)
    try:
        spec = load_employee(draft)
        problems = _db_errors(draft, teams)
        if problems:
            raise SpecError(problems)
        team = next(t for t in teams if str(t.pk) == str(draft.get("team")))
        boss = (
            Employee.objects.filter(team__in=teams, handle=spec.reports_to).first()
            if spec.reports_to
            else None
        )
        employee = employee_hire(
            spec=spec,
            team=team,
            user=request.user,
            status=draft.get("start_as") or "shadow",
            reports_to=boss,
        )
    except SpecError as exc:
        return _render_wizard(request, draft, "review", exc.errors, teams)
    messages.success(
        request,
        f"{employee.name} (@{employee.handle}) is hired into {employee.team.name}, "
        f"{employee.get_status_display().lower()} mode. Give them a first task.",
    )
    url = reverse("employees:profile", args=[employee.handle])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _files_panel(request, teams, **extra) -> HttpResponse:
    context = {**_landing_context(request, teams), **extra}
    template_name = f"{TEMPLATE}#files-panel" if request.htmx else TEMPLATE
    return render(request, template_name, context)


@require_POST
def hire_team(request: HtmxHttpRequest) -> HttpResponse:
    """Hire every employee of a team template into a team you manage, in shadow mode."""
    teams = _managed(request)
    if not teams:
        return _not_allowed(request)
    found = template(request.POST.get("template") or "")
    team = next((t for t in teams if str(t.pk) == request.POST.get("team")), None)
    if found is None or team is None:
        raise Http404("No such template or team.")
    try:
        result = template_hire_team(specs=found.employees, team=team, user=request.user)
    except SpecError as exc:
        messages.error(request, f"Nothing was hired: {exc}")
        return HttpResponseClientRedirect(reverse("employees:hire"))
    renamed = "".join(
        f" @{old} was taken, so that one is @{new}." for old, new in result.renamed.items()
    )
    messages.success(
        request,
        f"Hired {len(result.employees)} employees into {team.name} in shadow mode: "
        + ", ".join(f"@{e.handle}" for e in result.employees)
        + "."
        + renamed,
    )
    url = reverse("employees:directory")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_GET
def team_export(request: HtmxHttpRequest) -> HttpResponse:
    """Download a team you manage as a team file."""
    teams = _managed(request)
    if not teams:
        return _not_allowed(request)
    team = next((t for t in teams if str(t.pk) == request.GET.get("team")), None)
    if team is None:
        raise Http404("No team you manage has this id.")
    response = HttpResponse(
        json.dumps(team_file(team), indent=2, ensure_ascii=False), content_type="application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="team-{slugify(team.name)}.json"'
    return response


@require_POST
def team_import_view(request: HtmxHttpRequest) -> HttpResponse:
    """Import a team file into a team you manage (or, for superusers, as a new team)."""
    teams = _managed(request)
    if not teams:
        return _not_allowed(request)
    upload = request.FILES.get("file")
    target = request.POST.get("into") or ""
    into = next((t for t in teams if str(t.pk) == target), None)
    if into is None and not (target == "new" and request.user.is_superuser):
        return _files_panel(
            request, teams, import_errors=[("Import into", "pick a team you manage.")]
        )
    if upload is None:
        return _files_panel(
            request, teams, import_errors=[("File", "choose a team file (.json) to import.")]
        )
    try:
        data = json.loads(upload.read(5 * 1024 * 1024 + 1))
    except (ValueError, UnicodeDecodeError) as exc:
        return _files_panel(
            request, teams, import_errors=[("File", f"{upload.name} is not valid JSON ({exc}).")]
        )
    try:
        result = team_import(
            data=data,
            user=request.user,
            into=into,
            rename_conflicts=bool(request.POST.get("rename")),
        )
    except ImportRefused as exc:
        return _files_panel(request, teams, import_errors=[("", str(exc))])
    except SpecError as exc:
        return _files_panel(request, teams, import_errors=exc.errors)
    return _files_panel(request, _managed(request), import_result=result)
