"""Fixtures of the office floor's tests: employees with real work in several states."""

from __future__ import annotations

from datetime import time

import pytest

from aiworkforce.audit import Actor
from employees import services as employee_services
from employees.models import Employee, ToolPolicy
from tasks.claims import task_claim
from tasks.loop import run_task
from tests.factories import EmployeeFactory, ToolGrantFactory, assigned_task

# The offline engine follows this SOP literally: an email that needs approval.
EMAIL_SOP = [
    {"text": "Read the request."},
    {
        "text": "Reply to the customer.",
        "tool": {
            "name": "send_email",
            "arguments": {"to": ["{first_email}"], "subject": "Hello", "body": "We are on it."},
        },
    },
    {"text": "Summarise."},
]


def office_hours(employee: Employee) -> None:
    """Weekdays 09:00-17:00 in Berlin."""
    employee_services.working_hours_set(
        employee=employee,
        actor=Actor.system("tests"),
        always_on=False,
        tz="Europe/Berlin",
        windows=[(day, time(9), time(17)) for day in range(5)],
    )


@pytest.fixture
def busy_team(settings):
    """Adds `count` employees to a team, with work in several states and recorded steps."""
    settings.OPENAI_API_KEY = ""  # the offline engine

    def add(team, count: int) -> None:
        for n in range(count):
            employee = EmployeeFactory(team=team, sop=EMAIL_SOP)
            ToolGrantFactory(
                employee=employee,
                tool_name="send_email",
                scope={"allowed_domains": ["example.com"]},
                policy=ToolPolicy.NEEDS_APPROVAL,
            )
            if n % 4 == 3:
                continue  # idle
            task = assigned_task(employee, f"From: c{n}@example.com\n\nHi")
            run_task(task.pk)  # waiting for approval, with steps
            if n % 4 == 1:
                task_claim(task_id=assigned_task(employee).pk)  # and working
            if n % 4 == 2:
                office_hours(employee)

    return add
