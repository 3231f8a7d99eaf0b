"""Triggers that create tasks: duties coming due (webhooks live in tasks/webhooks.py)."""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from croniter import croniter
from django.db import transaction
from django.utils import timezone

from employees.models import Duty, EmployeeStatus
from tasks.models import TaskSource
from tasks.services import TaskRefused, task_create


def duty_latest_slot(duty: Duty, now: datetime) -> datetime:
    """The most recent time at or before `now` the duty's cron fired, in its own time zone."""
    local_now = now.astimezone(zoneinfo.ZoneInfo(duty.timezone))
    return croniter(duty.cron, local_now).get_prev(datetime)


def duties_materialise(*, now: datetime | None = None) -> int:
    """Create exactly one task per due slot; slots missed while nothing ran are not replayed."""
    now = now or timezone.now()
    created = 0
    duties = Duty.objects.filter(
        enabled=True, employee__status__in=[EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW]
    ).select_related("employee")
    for duty in duties:
        slot = duty_latest_slot(duty, now)
        # A new duty starts from its next slot, not from one that passed before it existed.
        if duty.last_slot_at is None and slot < duty.created_at:
            continue
        if duty.last_slot_at is not None and slot <= duty.last_slot_at:
            continue
        with transaction.atomic():
            # Compare-and-swap on the last slot: one materialiser wins per slot.
            won = Duty.objects.filter(pk=duty.pk, last_slot_at=duty.last_slot_at).update(
                last_slot_at=slot
            )
            if not won:
                continue
            try:
                _, was_created = task_create(
                    employee=duty.employee,
                    title=f"{duty.name} ({slot:%a %d %b %H:%M})",
                    input=duty.instructions,
                    source=TaskSource.DUTY,
                    idempotency_key=f"duty:{duty.pk}:{slot.isoformat()}",
                )
            except TaskRefused:
                continue
            created += was_created
    return created
