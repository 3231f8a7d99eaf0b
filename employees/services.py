"""Every change of state to the workforce goes through one of these functions.

Each validates with the same rules the admin shows, writes in one transaction and appends an
audit entry. Views, admin actions, jobs and commands call them alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from employees.models import (
    BRIEF_FIELDS,
    BriefVersion,
    Duty,
    Employee,
    EmployeeStatus,
    Team,
    TeamMembership,
    ToolGrant,
    WorkingWindow,
)
from employees.selectors import active_brief_version
from employees.validators import validate_working_windows
from mailboxes.services import mailbox_close
from tasks.mcp.services import grant_pin, mcp_credentials_remove_for, split_tool_name

# Which lifecycle moves are allowed; offboarding is final.
TRANSITIONS: dict[str, set[str]] = {
    EmployeeStatus.DRAFT: {EmployeeStatus.SHADOW, EmployeeStatus.ACTIVE, EmployeeStatus.OFFBOARDED},
    EmployeeStatus.SHADOW: {
        EmployeeStatus.ACTIVE,
        EmployeeStatus.PAUSED,
        EmployeeStatus.OFFBOARDED,
    },
    EmployeeStatus.ACTIVE: {
        EmployeeStatus.SHADOW,
        EmployeeStatus.PAUSED,
        EmployeeStatus.OFFBOARDED,
    },
    EmployeeStatus.PAUSED: {
        EmployeeStatus.ACTIVE,
        EmployeeStatus.SHADOW,
        EmployeeStatus.OFFBOARDED,
    },
    EmployeeStatus.OFFBOARDED: set(),
}


class TransitionError(Exception):
    """A lifecycle change that is not allowed from the employee's current status."""


@transaction.atomic
def employee_create(*, employee: Employee, actor: Actor, user=None) -> Employee:
    """Save a new employee (draft unless told otherwise) with brief version 1."""
    if employee.pk is not None:
        raise ValueError("employee_create takes an unsaved employee")
    employee.full_clean()
    if employee.status == EmployeeStatus.ACTIVE and employee.hired_at is None:
        employee.hired_at = timezone.now()
    employee.save()
    _brief_version_add(employee=employee, user=user, note="Hired")
    audit_log(
        action="employee.created",
        actor=actor,
        subject=employee,
        data={"handle": employee.handle, "team": employee.team.name, "status": employee.status},
    )
    return employee


@transaction.atomic
def employee_update(
    *, employee: Employee, actor: Actor, user=None, changes: dict[str, Any]
) -> Employee:
    """Change an employee's settings; a change of brief or SOP adds a brief version.

    An employee with golden tasks keeps its live brief until a draft passes them: its brief
    changes go through brief_version_draft instead (see brief_changes_gated).
    """
    if brief_changes_gated(employee) and set(changes) & {*BRIEF_FIELDS, "sop"}:
        raise ValueError("this employee has golden tasks: save its brief with employee_edit")
    return _employee_update(employee=employee, actor=actor, user=user, changes=changes)


@transaction.atomic
def employee_edit(
    *, employee: Employee, actor: Actor, user=None, changes: dict[str, Any]
) -> BriefVersion | None:
    """The back office's save: settings apply at once; brief and SOP changes of an employee
    with golden tasks become a draft version (returned), which goes live only through
    evaluations.activation. Decided under the employee's row lock, in one transaction."""
    Employee.objects.select_for_update().filter(pk=employee.pk).exists()
    brief = {name: value for name, value in changes.items() if name in {*BRIEF_FIELDS, "sop"}}
    draft = None
    if brief and brief_changes_gated(employee):
        draft = brief_version_draft(employee=employee, actor=actor, user=user, changes=brief)
        changes = {name: value for name, value in changes.items() if name not in brief}
    _employee_update(employee=employee, actor=actor, user=user, changes=changes)
    return draft


def _employee_update(
    *, employee: Employee, actor: Actor, user, changes: dict[str, Any]
) -> Employee:
    if "status" in changes:
        raise ValueError("change the status through employee_transition, not employee_update")
    stored = Employee.objects.select_for_update().get(pk=employee.pk)
    for name, value in changes.items():
        setattr(employee, name, value)
    employee.status = stored.status  # never overwrite a concurrent lifecycle change
    employee.full_clean()
    changed = sorted(name for name in changes if getattr(stored, name) != getattr(employee, name))
    if not changed:
        return employee
    employee.save(update_fields=[*changed, "updated_at"])
    if set(changed) & {*BRIEF_FIELDS, "sop"}:
        _brief_version_add(employee=employee, user=user, note="Updated " + ", ".join(changed))
    audit_log(action="employee.updated", actor=actor, subject=employee, data={"fields": changed})
    return employee


def _brief_version_add(
    *, employee: Employee, user, note: str, live: bool = True, based_on: int | None = None
) -> BriefVersion:
    last = employee.brief_versions.aggregate(n=Max("number"))["n"] or 0
    person = user if getattr(user, "is_authenticated", False) else None
    return BriefVersion.objects.create(
        employee=employee,
        number=last + 1,
        brief=employee.brief,
        sop=employee.sop,
        based_on=based_on,
        author=person,
        note=note[:200],
        activated_at=timezone.now() if live else None,
        activated_by=person if live else None,
    )


def brief_changes_gated(employee: Employee) -> bool:
    """Whether a brief change must pass the employee's golden tasks before it goes live: not
    before it is hired (nothing is live yet) nor after it left."""
    if employee.pk is None or employee.status in (EmployeeStatus.DRAFT, EmployeeStatus.OFFBOARDED):
        return False
    return employee.golden_tasks.exists()


@transaction.atomic
def brief_version_draft(
    *, employee: Employee, actor: Actor, user=None, changes: dict[str, Any], note: str = ""
) -> BriefVersion:
    """Save brief or SOP changes as a draft version; the live brief stays as it is.

    The draft is validated as the employee would be with it, so a draft can always be
    activated later without failing then.
    """
    unknown = set(changes) - {*BRIEF_FIELDS, "sop"}
    if unknown:
        raise ValueError(f"not brief fields: {', '.join(sorted(unknown))}")
    stored = Employee.objects.select_for_update().get(pk=employee.pk)
    changed = sorted(name for name in changes if getattr(stored, name) != changes[name])
    if not changed:
        raise ValidationError("The draft would be the same as the live brief.")
    for name, value in changes.items():
        setattr(stored, name, value)
    stored.full_clean()
    live = active_brief_version(stored)
    version = _brief_version_add(
        employee=stored,
        user=user,
        note=note or "Draft: " + ", ".join(changed),
        live=False,
        based_on=live.number if live else None,
    )
    audit_log(
        action="brief_version.drafted",
        actor=actor,
        subject=employee,
        data={"handle": employee.handle, "version": version.number, "fields": changed},
    )
    return version


@transaction.atomic
def employee_transition(*, employee: Employee, to: str, actor: Actor, reason: str = "") -> Employee:
    """Move an employee through its lifecycle with a compare-and-swap on the status."""
    current = employee.status
    if to not in TRANSITIONS[current]:
        raise TransitionError(
            f"{employee.name} is {EmployeeStatus(current).label.lower()} and cannot become "
            f"{EmployeeStatus(to).label.lower()}."
        )
    now = timezone.now()
    extra: dict[str, Any] = {}
    if to == EmployeeStatus.ACTIVE and employee.hired_at is None:
        extra["hired_at"] = now
    if to == EmployeeStatus.OFFBOARDED:
        extra["offboarded_at"] = now
    updated = Employee.objects.filter(pk=employee.pk, status=current).update(
        status=to,
        updated_at=now,
        status_reason=reason[:500],
        status_changed_at=now,
        **extra,
    )
    if updated != 1:
        employee.refresh_from_db()
        raise TransitionError(
            f"{employee.name} was changed by someone else meanwhile (now "
            f"{employee.get_status_display().lower()}); reload and try again."
        )
    employee.refresh_from_db()
    from tasks import services as task_services

    if to == EmployeeStatus.OFFBOARDED:
        # Offboarding stops every schedule, revokes webhook credentials, tool grants (MCP
        # tools included) and the employee's own MCP credentials, and ends open work; the
        # history is kept (the trail names each grant and credential).
        employee.duties.filter(enabled=True).update(enabled=False)
        employee.webhooks.filter(enabled=True).update(enabled=False)
        for grant in employee.tool_grants.all():
            tool_grant_revoke(grant=grant, actor=actor)
        mcp_credentials_remove_for(employee=employee, actor=actor)
        mailbox_close(employee=employee, actor=actor)  # mail to it is held for a person
        task_services.tasks_cancel_for_employee(
            employee=employee, actor=actor, reason="Offboarded."
        )
    elif to in (EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW):
        task_services.tasks_dispatch_waiting(employee=employee)
    audit_log(
        action=f"employee.{_TRANSITION_VERBS[to]}",
        actor=actor,
        subject=employee,
        data={"from": current, "to": to, "reason": reason},
    )
    return employee


_TRANSITION_VERBS = {
    EmployeeStatus.SHADOW: "shadowed",
    EmployeeStatus.ACTIVE: "activated",
    EmployeeStatus.PAUSED: "paused",
    EmployeeStatus.OFFBOARDED: "offboarded",
    EmployeeStatus.DRAFT: "drafted",
}


def employee_activate(*, employee: Employee, actor: Actor) -> Employee:
    """Put an employee to work."""
    return employee_transition(employee=employee, to=EmployeeStatus.ACTIVE, actor=actor)


def employee_pause(*, employee: Employee, actor: Actor, reason: str = "") -> Employee:
    """Stop an employee taking new steps until it is activated again."""
    return employee_transition(
        employee=employee, to=EmployeeStatus.PAUSED, actor=actor, reason=reason
    )


def employee_offboard(*, employee: Employee, actor: Actor, reason: str = "") -> Employee:
    """Retire an employee for good: duties stop, history stays."""
    return employee_transition(
        employee=employee, to=EmployeeStatus.OFFBOARDED, actor=actor, reason=reason
    )


@transaction.atomic
def working_hours_set(
    *,
    employee: Employee,
    actor: Actor,
    always_on: bool,
    tz: str,
    windows: Iterable[tuple[int, time, time]],
) -> Employee:
    """Replace an employee's working hours: always on, or weekly windows in a time zone."""
    windows = list(windows)
    validate_working_windows(windows)
    if not always_on and not windows:
        raise ValidationError(
            "An employee that is not always on needs at least one working window."
        )
    employee.always_on = always_on
    employee.timezone = tz
    employee.full_clean()
    employee.save(update_fields=["always_on", "timezone", "updated_at"])
    employee.working_windows.all().delete()
    WorkingWindow.objects.bulk_create(
        WorkingWindow(employee=employee, weekday=day, start=start, end=end)
        for day, start, end in windows
    )
    audit_log(
        action="employee.hours_changed",
        actor=actor,
        subject=employee,
        data={
            "always_on": always_on,
            "timezone": tz,
            "windows": [[day, f"{s:%H:%M}", f"{e:%H:%M}"] for day, s, e in windows],
        },
    )
    return employee


@transaction.atomic
def tool_grant_save(*, grant: ToolGrant, actor: Actor) -> ToolGrant:
    """Grant a tool (or change a grant's scope or policy) after validating it against the tool."""
    grant.full_clean()
    created = grant.pk is None
    if created and split_tool_name(grant.tool_name):
        # An MCP tool is granted as its server describes it now (the rug-pull guard's pin).
        grant_pin(grant=grant)
    if created:
        grant.save()
    else:
        # Never the pin or the suspension: a suspension made meanwhile must not be undone.
        grant.save(update_fields=["tool_name", "scope", "policy"])
    audit_log(
        action="tool_grant.created" if created else "tool_grant.changed",
        actor=actor,
        subject=grant.employee,
        data={"tool": grant.tool_name, "scope": grant.scope, "policy": grant.policy},
    )
    return grant


@transaction.atomic
def tool_grant_revoke(*, grant: ToolGrant, actor: Actor) -> None:
    """Take a tool away from an employee."""
    employee = grant.employee
    tool_name = grant.tool_name
    grant.delete()
    audit_log(action="tool_grant.revoked", actor=actor, subject=employee, data={"tool": tool_name})


@transaction.atomic
def duty_save(*, duty: Duty, actor: Actor) -> Duty:
    """Create or change a duty after validating its cron expression and time zone."""
    duty.full_clean()
    if duty.enabled and duty.employee.status == EmployeeStatus.OFFBOARDED:
        raise ValidationError("An offboarded employee cannot take on duties.")
    created = duty.pk is None
    duty.save()
    audit_log(
        action="duty.created" if created else "duty.changed",
        actor=actor,
        subject=duty.employee,
        data={
            "duty": duty.name,
            "cron": duty.cron,
            "timezone": duty.timezone,
            "enabled": duty.enabled,
        },
    )
    return duty


@transaction.atomic
def duty_delete(*, duty: Duty, actor: Actor) -> None:
    """Remove a duty."""
    employee = duty.employee
    name = duty.name
    duty.delete()
    audit_log(action="duty.deleted", actor=actor, subject=employee, data={"duty": name})


@transaction.atomic
def team_save(*, team: Team, actor: Actor) -> Team:
    """Create or edit a team; opening it to requests from other teams (or closing it) is audited."""
    team.full_clean()
    before = Team.objects.filter(pk=team.pk).values("accepts_requests_from_other_teams").first()
    team.save()
    accepts = team.accepts_requests_from_other_teams
    if before is None or before["accepts_requests_from_other_teams"] != accepts:
        audit_log(
            action="team.created" if before is None else "team.updated",
            actor=actor,
            subject=team,
            data={"accepts_requests_from_other_teams": accepts},
        )
    return team


@transaction.atomic
def team_membership_save(*, membership: TeamMembership, actor: Actor) -> TeamMembership:
    """Add a person to a team or change their role there (which decides what they may approve)."""
    membership.full_clean()
    created = membership.pk is None
    membership.save()
    audit_log(
        action="team.member_added" if created else "team.member_role_changed",
        actor=actor,
        subject=membership.team,
        data={"user": membership.user.get_username(), "role": membership.role},
    )
    return membership


@transaction.atomic
def team_membership_remove(*, membership: TeamMembership, actor: Actor) -> None:
    """Remove a person from a team."""
    team, username = membership.team, membership.user.get_username()
    membership.delete()
    audit_log(action="team.member_removed", actor=actor, subject=team, data={"user": username})
