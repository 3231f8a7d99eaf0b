"""Factories for the tests' rows (factory-boy): one per model people and tests create."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from employees.models import Employee, EmployeeStatus, Team, TeamMembership, TeamRole, ToolGrant

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"person{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password(PASSWORD)


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TeamMembership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = TeamRole.APPROVER


class EmployeeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Employee

    name = factory.Sequence(lambda n: f"Employee {n}")
    handle = factory.Sequence(lambda n: f"employee-{n}")
    team = factory.SubFactory(TeamFactory)
    role_title = "Support specialist"
    job_description = "Answers customer questions."
    status = EmployeeStatus.ACTIVE


class ToolGrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ToolGrant

    employee = factory.SubFactory(EmployeeFactory)
    tool_name = "escalate_to_human"
    scope = factory.LazyFunction(dict)


def assigned_task(employee, text: str = "Please help the customer.", **kwargs):
    """A task assigned to `employee` the way people assign one (urgent: no working hours)."""
    from tasks.services import task_create

    return task_create(employee=employee, title="", input=text, urgent=True, **kwargs)[0]
