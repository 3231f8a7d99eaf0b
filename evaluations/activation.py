"""Putting a brief version live: only when it passes the golden tasks at least as well as the
live one does (both measured on the same cases and model), or when a manager overrides that
with a reason. Both are audited."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from employees.models import BRIEF_FIELDS, BriefVersion, Employee, EmployeeStatus
from evaluations.selectors import activation_check, gate_for

OVERRIDE_REASON_MIN = 10


class ActivationRefused(Exception):
    """A version that may not go live (yet), with what to do about it in words."""


@transaction.atomic
def brief_version_activate(
    *,
    employee: Employee,
    version: BriefVersion,
    actor: Actor,
    user=None,
    override_reason: str = "",
) -> BriefVersion:
    """Make `version` the live brief, if the gate allows it or a manager overrides it."""
    employee = Employee.objects.select_for_update().get(pk=employee.pk)
    if version.employee_id != employee.pk:
        raise ActivationRefused(f"@{employee.handle} has no such brief version.")
    if employee.status == EmployeeStatus.OFFBOARDED:
        raise ActivationRefused(f"@{employee.handle} is offboarded: its brief no longer changes.")
    override_reason = " ".join((override_reason or "").split())[:500]
    gate = gate_for(employee, [version.number])
    live = gate.live
    if live is not None and live.pk == version.pk:
        raise ActivationRefused(f"v{version.number} is already the live brief.")
    problem = activation_check(employee, version, gate)
    if problem and len(override_reason) < OVERRIDE_REASON_MIN:
        hint = (
            f" To activate it anyway, give a reason of at least {OVERRIDE_REASON_MIN} characters."
        )
        raise ActivationRefused(problem + hint)
    for name in BRIEF_FIELDS:
        setattr(employee, name, version.brief.get(name, ""))
    employee.sop = version.sop
    try:
        employee.full_clean()
    except ValidationError as exc:
        # A version saved under older rules (or settings) that no longer hold.
        raise ActivationRefused(
            f"v{version.number} is no longer a valid brief: {' '.join(exc.messages)}"
        ) from exc
    employee.save(update_fields=[*BRIEF_FIELDS, "sop", "updated_at"])
    person = user if getattr(user, "is_authenticated", False) else None
    BriefVersion.objects.filter(pk=version.pk).update(
        activated_at=timezone.now(), activated_by=person
    )
    version.refresh_from_db()
    candidate, previous = gate.score(version.number), gate.score(live.number) if live else None
    audit_log(
        action="brief_version.activated",
        actor=actor,
        subject=employee,
        data={
            "handle": employee.handle,
            "version": version.number,
            "previous": live.number if live else None,
            # Not "pass_rate": the audit trail blanks keys that look like passwords.
            "rate": candidate.rate,
            "previous_rate": previous.rate if previous else None,
            "gate": problem or "passed",
            "override_reason": override_reason if problem else "",
        },
    )
    return version
