"""Lifecycle and configuration services: compare-and-swap status changes, brief history, audit."""

from __future__ import annotations

import pytest

from aiworkforce.models import AuditEntry
from employees import services
from employees.models import Duty, Employee, EmployeeStatus, ToolGrant
from tests.factories import EmployeeFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_activation_sets_hired_at_once_and_is_audited(system_actor):
    employee = EmployeeFactory(status=EmployeeStatus.DRAFT)
    services.employee_activate(employee=employee, actor=system_actor)
    hired = employee.hired_at
    assert employee.status == EmployeeStatus.ACTIVE and hired is not None
    services.employee_pause(employee=employee, actor=system_actor, reason="holiday")
    services.employee_activate(employee=employee, actor=system_actor)
    assert employee.hired_at == hired
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["employee.activated", "employee.paused", "employee.activated"]
    paused = AuditEntry.objects.get(action="employee.paused")
    assert paused.data == {"from": "active", "to": "paused", "reason": "holiday"}


def test_a_pause_keeps_its_reason_until_the_next_change(system_actor):
    employee = EmployeeFactory(status=EmployeeStatus.ACTIVE)
    services.employee_pause(employee=employee, actor=system_actor, reason="spend spike: $4 in 1 h")
    assert employee.status_reason == "spend spike: $4 in 1 h"
    assert employee.status_changed_at is not None
    services.employee_activate(employee=employee, actor=system_actor)
    assert employee.status_reason == ""


def test_offboarding_stops_duties_keeps_history_and_is_final(system_actor):
    employee = EmployeeFactory()
    services.duty_save(
        duty=Duty(employee=employee, name="Sweep", cron="0 9 * * *", instructions="x"),
        actor=system_actor,
    )
    services.employee_offboard(employee=employee, actor=system_actor)
    assert employee.offboarded_at is not None
    assert not employee.duties.filter(enabled=True).exists()
    assert employee.duties.count() == 1
    with pytest.raises(services.TransitionError, match="is offboarded and cannot become active"):
        services.employee_activate(employee=employee, actor=system_actor)


def test_offboarding_revokes_every_tool_grant_and_the_trail_names_each(system_actor):
    employee = EmployeeFactory()
    for tool in ("escalate_to_human", "create_task"):
        services.tool_grant_save(
            grant=ToolGrant(employee=employee, tool_name=tool), actor=system_actor
        )

    services.employee_offboard(employee=employee, actor=system_actor)

    assert not employee.tool_grants.exists()
    revoked = AuditEntry.objects.filter(action="tool_grant.revoked").values_list("data", flat=True)
    assert sorted(entry["tool"] for entry in revoked) == ["create_task", "escalate_to_human"]
    with pytest.raises(services.TransitionError, match="is offboarded and cannot become active"):
        services.employee_activate(employee=employee, actor=system_actor)


def test_status_change_loses_to_a_concurrent_change(system_actor):
    employee = EmployeeFactory(status=EmployeeStatus.ACTIVE)
    stale_copy = Employee.objects.get(pk=employee.pk)
    services.employee_pause(employee=employee, actor=system_actor)
    with pytest.raises(services.TransitionError, match="changed by someone else"):
        services.employee_offboard(employee=stale_copy, actor=system_actor)
    employee.refresh_from_db()
    assert employee.status == EmployeeStatus.PAUSED
    assert not AuditEntry.objects.filter(action="employee.offboarded").exists()


def test_brief_changes_are_versioned_with_author(system_actor):
    manager = UserFactory()
    employee = EmployeeFactory(goals="Answer fast")
    services.employee_update(
        employee=employee, actor=system_actor, user=manager, changes={"goals": "Answer well"}
    )
    services.employee_update(
        employee=employee,
        actor=system_actor,
        user=manager,
        changes={"sop": [{"text": "Read the request"}]},
    )
    # A change that is not part of the brief adds no version.
    services.employee_update(employee=employee, actor=system_actor, changes={"role_title": "Lead"})
    versions = list(employee.brief_versions.order_by("number"))
    assert [v.number for v in versions] == [1, 2]
    assert versions[0].brief["goals"] == "Answer well"
    assert versions[1].sop == [{"text": "Read the request"}]
    assert versions[1].author == manager


def test_update_with_no_real_change_writes_nothing(system_actor):
    employee = EmployeeFactory(goals="Same")
    services.employee_update(employee=employee, actor=system_actor, changes={"goals": "Same"})
    assert not AuditEntry.objects.exists()
    assert not employee.brief_versions.exists()


def test_update_cannot_change_status(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValueError, match="employee_transition"):
        services.employee_update(
            employee=employee, actor=system_actor, changes={"status": "paused"}
        )


def test_offboarded_employee_cannot_take_on_duties(system_actor):
    employee = EmployeeFactory(status=EmployeeStatus.OFFBOARDED)
    with pytest.raises(Exception, match="offboarded employee cannot take on duties"):
        services.duty_save(
            duty=Duty(employee=employee, name="Sweep", cron="0 9 * * *", instructions="x"),
            actor=system_actor,
        )
