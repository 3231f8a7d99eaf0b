"""Putting a brief version live: only when it passes the golden tasks at least as well as the
live one does, or when a manager overrides that with a reason. Both are audited."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from employees.models import BRIEF_FIELDS, BriefVersion, Employee
from employees.selectors import active_brief_version
from evaluations.selectors import activation_check, version_score

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
    override_reason = " ".join((override_reason or "").split())[:500]
    problem = activation_check(employee, version)
    live = active_brief_version(employee)
    if live is not None and live.pk == version.pk:
        raise ActivationRefused(problem)
    if problem and len(override_reason) < OVERRIDE_REASON_MIN:
        hint = (
            f" To activate it anyway, give a reason of at least {OVERRIDE_REASON_MIN} characters."
        )
        raise ActivationRefused(problem + hint)
    now = timezone.now()
    for name in BRIEF_FIELDS:
        setattr(employee, name, version.brief.get(name, ""))
    employee.sop = version.sop
    employee.full_clean()
    employee.save(update_fields=[*BRIEF_FIELDS, "sop", "updated_at"])
    person = user if getattr(user, "is_authenticated", False) else None
    BriefVersion.objects.filter(pk=version.pk).update(activated_at=now, activated_by=person)
    version.refresh_from_db()
    candidate = version_score(employee, version.number)
    previous = version_score(employee, live.number) if live else None
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
