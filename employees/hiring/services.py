"""Hiring: employees made from employee specs (a template, the hire form, a team file).

Everything goes through the workforce's own services (employee_create, tool_grant_save,
duty_save, working_hours_set, document_upload, memory_remember, golden_task_create,
employee_transition), so a hire is validated and audited like any other change, in one
transaction: a spec that fails halfway leaves nothing behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from aiworkforce.audit import Actor, audit_log
from employees.hiring.golden import GoldenSpec
from employees.hiring.spec import (
    EmployeeSpec,
    GrantSpec,
    SpecError,
    TeamSpec,
    load_team_file,
)
from employees.memory.ingest import document_upload
from employees.memory.services import memory_remember
from employees.models import (
    Duty,
    Employee,
    EmployeeStatus,
    KnowledgeDocument,
    MemoryKind,
    Team,
    ToolGrant,
)
from employees.services import (
    duty_save,
    employee_create,
    employee_transition,
    team_save,
    tool_grant_save,
    working_hours_set,
)
from evaluations.services import golden_task_create

HIRE_STATUSES = (EmployeeStatus.SHADOW, EmployeeStatus.ACTIVE, EmployeeStatus.DRAFT)
_FIELD_LABELS = {
    "handle": "Handle",
    "name": "Name",
    "role_title": "Role title",
    "job_description": "Job description",
    "reports_to": "Reports to",
    "model_base_url": "Model endpoint",
    "sop": "SOP",
    "scope": "Scope",
    "tool_name": "Tool",
    "cron": "Schedule",
    "timezone": "Time zone",
    "__all__": "",
}


class ImportRefused(Exception):
    """A team file that would overwrite or clash with what exists; nothing was changed."""


def _spec_error(exc: ValidationError, where: str) -> SpecError:
    if hasattr(exc, "error_dict"):
        errors = [
            (
                f"{where} \u203a {_FIELD_LABELS.get(name, name)}".rstrip(" \u203a"),
                " ".join(messages),
            )
            for name, messages in exc.message_dict.items()
        ]
    else:
        errors = [(where, " ".join(exc.messages))]
    return SpecError(errors)


def _employee_row(spec: EmployeeSpec, team: Team, user, reports_to: Employee | None) -> Employee:
    return Employee(
        team=team,
        manager=user if getattr(user, "is_authenticated", False) else None,
        reports_to=reports_to,
        name=spec.name,
        handle=spec.handle,
        avatar_colour=spec.avatar_colour,
        is_manager=spec.is_manager,
        role_title=spec.role_title,
        job_description=spec.job_description,
        sop=spec.sop,
        timezone=spec.timezone,
        always_on=True,
        max_cost_per_task=spec.max_cost_per_task,
        max_cost_per_day=spec.max_cost_per_day,
        max_tokens_per_turn=spec.max_tokens_per_turn,
        memory_retention_days=spec.memory_retention_days,
        status=EmployeeStatus.DRAFT,
        **spec.brief,
        **spec.model,
    )


@transaction.atomic
def employee_hire(
    *,
    spec: EmployeeSpec,
    team: Team,
    user=None,
    status: str = EmployeeStatus.SHADOW,
    reports_to: Employee | None = None,
    note: str = "",
) -> Employee:
    """Hire one employee from a checked spec: in shadow mode unless told otherwise.

    Raises SpecError naming the field and why; nothing is saved then.
    """
    if status not in HIRE_STATUSES:
        raise SpecError(
            [("Start as", f"'{status}' is not a way to start; use shadow, active or draft.")]
        )
    actor = Actor.for_user(user)
    where = f"@{spec.handle}"
    try:
        employee = employee_create(
            employee=_employee_row(spec, team, user, reports_to), actor=actor, user=user
        )
        if not spec.always_on or spec.timezone != "UTC":
            working_hours_set(
                employee=employee,
                actor=actor,
                always_on=spec.always_on,
                tz=spec.timezone,
                windows=spec.windows,
            )
        for grant in spec.grants:
            tool_grant_save(
                grant=ToolGrant(
                    employee=employee, tool_name=grant.tool, scope=grant.scope, policy=grant.policy
                ),
                actor=actor,
            )
        for duty in spec.duties:
            duty_save(
                duty=Duty(
                    employee=employee,
                    name=duty.name,
                    cron=duty.cron,
                    timezone=duty.timezone,
                    instructions=duty.instructions,
                    enabled=duty.enabled,
                ),
                actor=actor,
            )
        for document in spec.documents:
            document_upload(
                owner=employee,
                uploaded_file=SimpleUploadedFile(document.title, document.content),
                user=user,
            )
        for fact in spec.facts:
            memory_remember(
                kind=MemoryKind.FACT,
                text=fact.text,
                employee=employee,
                actor=actor,
                user=user,
                pinned=fact.pinned,
                source="hired with this knowledge",
            )
        for golden in spec.golden_tasks:
            golden_task_create(
                employee=employee,
                title=golden.title,
                input=golden.input,
                expectations=golden.expectations,
                user=user,
            )
        if status != EmployeeStatus.DRAFT:
            employee_transition(employee=employee, to=status, actor=actor, reason=note)
    except ValidationError as exc:
        raise _spec_error(exc, where) from None
    return employee


# --- team files ---------------------------------------------------------------------------------


@dataclass
class ImportResult:
    team: Team
    created_team: bool
    employees: list[Employee]
    renamed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _free_handle(handle: str, taken: set[str]) -> str:
    stem = re.sub(r"-\d+$", "", handle)[:36]
    number = 2
    while f"{stem}-{number}" in taken:
        number += 1
    return f"{stem}-{number}"


def _renamed_value(value, renamed: dict[str, str]):
    """A delegate hint's `to` or a scope's allowed handles, following renamed handles."""
    if isinstance(value, str):
        bare = value.lstrip("@")
        return value.replace(bare, renamed[bare]) if bare in renamed else value
    if isinstance(value, list):
        return [_renamed_value(item, renamed) for item in value]
    return value


def _with_renames(spec: EmployeeSpec, renamed: dict[str, str]) -> EmployeeSpec:
    if not renamed:
        return spec
    sop = []
    for step in spec.sop:
        hint = step.get("tool")
        if hint and hint.get("name") == "delegate" and "to" in (hint.get("arguments") or {}):
            arguments = {
                **hint["arguments"],
                "to": _renamed_value(hint["arguments"]["to"], renamed),
            }
            step = {**step, "tool": {**hint, "arguments": arguments}}
        sop.append(step)
    grants = [
        GrantSpec(
            tool=grant.tool,
            policy=grant.policy,
            scope={
                **grant.scope,
                "allowed_handles": _renamed_value(grant.scope["allowed_handles"], renamed),
            }
            if "allowed_handles" in grant.scope
            else grant.scope,
        )
        for grant in spec.grants
    ]
    return replace(
        spec,
        handle=renamed.get(spec.handle, spec.handle),
        reports_to=renamed.get(spec.reports_to, spec.reports_to),
        sop=sop,
        grants=grants,
        golden_tasks=[_golden_with_renames(golden, renamed) for golden in spec.golden_tasks],
    )


def _golden_with_renames(golden: GoldenSpec, renamed: dict[str, str]) -> GoldenSpec:
    """A golden task whose expected delegations follow renamed handles, like the SOP's."""
    calls = []
    for call in golden.expectations.get("calls", []):
        arguments = call.get("arguments") or {}
        if call["tool"] == "delegate" and "to" in arguments:
            call = {
                **call,
                "arguments": {**arguments, "to": _renamed_value(arguments["to"], renamed)},
            }
        calls.append(call)
    if "calls" not in golden.expectations:
        return golden
    return replace(golden, expectations={**golden.expectations, "calls": calls})


def _plan_handles(specs: list[EmployeeSpec], *, rename_conflicts: bool) -> dict[str, str]:
    handles = [spec.handle for spec in specs]
    taken = set(Employee.objects.filter(handle__in=handles).values_list("handle", flat=True))
    if not taken:
        return {}
    if not rename_conflicts:
        listed = ", ".join(f"@{h}" for h in sorted(taken))
        raise ImportRefused(
            f"Nothing was imported: the handle{'s' if len(taken) > 1 else ''} {listed} "
            f"{'are' if len(taken) > 1 else 'is'} already taken here, and an import never "
            "overwrites an employee. Import with --rename-conflicts (the 'Rename clashing "
            "handles' box) to give the newcomers free handles such as "
            f"@{_free_handle(sorted(taken)[0], taken)}, or rename them in the file."
        )
    everything = set(Employee.objects.values_list("handle", flat=True)) | set(handles)
    renamed = {}
    for handle in sorted(taken):
        renamed[handle] = _free_handle(handle, everything)
        everything.add(renamed[handle])
    return renamed


def _target_team(spec: TeamSpec, *, into: Team | None, team_name: str, actor: Actor):
    if into is not None:
        return into, False
    name = (team_name or spec.name).strip()
    if Team.objects.filter(name=name).exists():
        raise ImportRefused(
            f"Nothing was imported: a team called '{name}' already exists, and an import never "
            f'overwrites one. Import into it on purpose (--into "{name}"), or create a new '
            'team under another name (--team-name "…").'
        )
    team = Team(
        name=name,
        description=spec.description,
        accepts_requests_from_other_teams=spec.accepts_requests_from_other_teams,
    )
    try:
        return team_save(team=team, actor=actor), True
    except ValidationError as exc:
        raise _spec_error(exc, "team") from None


def _team_knowledge(spec: TeamSpec, team: Team, *, created: bool, rename: bool, user, result):
    existing = (
        set()
        if created
        else set(
            KnowledgeDocument.objects.filter(team=team, employee=None).values_list(
                "title", flat=True
            )
        )
    )
    for document in spec.documents:
        title = document.title
        if title in existing:
            if not rename:
                raise ImportRefused(
                    f"Nothing was imported: the team '{team.name}' already has a document "
                    f"'{title}', and an import never replaces one. Use --rename-conflicts to "
                    "import it under a new title, or remove it from the file."
                )
            stem, dot, extension = title.rpartition(".")
            title = f"{stem} (imported).{extension}" if dot else f"{title} (imported)"
            result.notes.append(f"Team document '{document.title}' imported as '{title}'.")
        document_upload(
            owner=team, uploaded_file=SimpleUploadedFile(title, document.content), user=user
        )
    for fact in spec.facts:
        memory_remember(
            kind=MemoryKind.FACT,
            text=fact.text,
            team=team,
            actor=Actor.for_user(user),
            user=user,
            pinned=fact.pinned,
            source="imported with the team file",
        )


@transaction.atomic
def team_import(
    *,
    data: dict,
    user=None,
    into: Team | None = None,
    team_name: str = "",
    rename_conflicts: bool = False,
    status: str = EmployeeStatus.SHADOW,
) -> ImportResult:
    """Create a team's employees (and, unless `into`, the team) from a team file, all or nothing.

    Never overwrites: an existing team, handle or team document title refuses the whole import
    (ImportRefused) unless asked for on purpose (`into`, `rename_conflicts`). Unknown tools,
    MCP tools of an unregistered server included, refuse it too (SpecError).
    """
    spec = load_team_file(data)
    actor = Actor.for_user(user)
    renamed = _plan_handles(spec.employees, rename_conflicts=rename_conflicts)
    team, created = _target_team(spec, into=into, team_name=team_name, actor=actor)
    result = ImportResult(team=team, created_team=created, employees=[], renamed=renamed)
    _team_knowledge(spec, team, created=created, rename=rename_conflicts, user=user, result=result)
    specs = [_with_renames(employee, renamed) for employee in spec.employees]
    in_file = {employee.handle for employee in specs}
    hired: dict[str, Employee] = {}
    pending = list(specs)
    while pending:  # bosses first, so that each reporting line points at a saved employee
        ready = [s for s in pending if s.reports_to not in in_file or s.reports_to in hired]
        if not ready:
            raise SpecError(
                [("employees", "the reporting lines in this file go round in a circle.")]
            )
        for employee_spec in ready:
            boss = hired.get(employee_spec.reports_to)
            if employee_spec.reports_to and boss is None:
                result.notes.append(
                    f"@{employee_spec.handle} reported to @{employee_spec.reports_to}, who is not "
                    "in this file: imported without a reporting line."
                )
            hired[employee_spec.handle] = employee_hire(
                spec=employee_spec,
                team=team,
                user=user,
                status=status,
                reports_to=boss,
                note="Imported from a team file.",
            )
            pending.remove(employee_spec)
    result.employees = [hired[employee.handle] for employee in specs]
    audit_log(
        action="team.imported",
        actor=actor,
        subject=team,
        data={
            "employees": [e.handle for e in result.employees],
            "renamed": renamed,
            "created_team": created,
        },
    )
    return result


@transaction.atomic
def template_hire_team(
    *, specs: list[EmployeeSpec], team: Team, user, rename_conflicts: bool = True
) -> ImportResult:
    """Hire every employee of a team template into one team at once, in shadow mode."""
    renamed = _plan_handles(specs, rename_conflicts=rename_conflicts)
    data_specs = [_with_renames(spec, renamed) for spec in specs]
    result = ImportResult(team=team, created_team=False, employees=[], renamed=renamed)
    hired: dict[str, Employee] = {}
    for spec in sorted(data_specs, key=lambda s: bool(s.reports_to)):
        hired[spec.handle] = employee_hire(
            spec=spec, team=team, user=user, reports_to=hired.get(spec.reports_to)
        )
    result.employees = [hired[spec.handle] for spec in data_specs]
    return result
