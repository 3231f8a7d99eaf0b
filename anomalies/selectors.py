"""Reads of the anomalies app that other apps need (the dashboard's "what needs me now")."""

from __future__ import annotations

from collections.abc import Iterable

from anomalies.models import AnomalyPause
from employees.models import Employee, EmployeeStatus


def anomaly_pauses_current(employees: Iterable[Employee]) -> dict[int, AnomalyPause]:
    """Employee id -> the rule's pause, for those of `employees` a rule paused and that are
    still in that pause (not resumed, nor paused again since by a person); one query."""
    since = {
        e.pk: e.status_changed_at
        for e in employees
        if e.status == EmployeeStatus.PAUSED and e.status_changed_at is not None
    }
    if not since:
        return {}
    pauses = AnomalyPause.objects.filter(
        employee_id__in=since, paused_at__in=set(since.values())
    ).order_by()
    return {p.employee_id: p for p in pauses if since[p.employee_id] == p.paused_at}
