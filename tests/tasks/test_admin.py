"""Managers assign work from the back office, through the same service as every trigger."""

from __future__ import annotations

import pytest
from django.urls import reverse

from aiworkforce.models import AuditEntry
from employees.models import EmployeeStatus
from tasks.models import Task, TaskStatus
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


def _assign(admin_client, employee, **extra):
    data = {
        "employee": employee.pk,
        "title": "Call the supplier",
        "input": "Ask about order 7",
        "priority": 20,
    }
    data.update(extra)
    return admin_client.post(reverse("admin:tasks_task_add"), data, follow=True)


def test_manager_assigns_a_task_from_the_admin(admin_client, superuser):
    employee = EmployeeFactory()
    response = _assign(admin_client, employee, urgent="on")
    assert response.status_code == 200
    task = Task.objects.get()
    assert task.source == "manual" and task.requested_by_user == superuser and task.urgent
    assert task.status == TaskStatus.QUEUED
    assert "Assigned task #" in response.text
    assert AuditEntry.objects.filter(action="task.created", actor_user=superuser).exists()


def test_assigning_to_an_offboarded_employee_is_refused_with_a_message(admin_client):
    employee = EmployeeFactory(status=EmployeeStatus.OFFBOARDED)
    response = _assign(admin_client, employee)
    assert "is offboarded and cannot take tasks" in response.text
    assert not Task.objects.exists()


def test_assigning_without_instructions_is_refused(admin_client):
    response = _assign(admin_client, EmployeeFactory(), input="")
    assert "This field is required" in response.text
    assert not Task.objects.exists()


def test_cancel_action_goes_through_the_service(admin_client):
    employee = EmployeeFactory()
    _assign(admin_client, employee)
    task = Task.objects.get()
    admin_client.post(
        reverse("admin:tasks_task_changelist"), {"action": "cancel", "_selected_action": [task.pk]}
    )
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    assert AuditEntry.objects.filter(action="task.cancelled").exists()
