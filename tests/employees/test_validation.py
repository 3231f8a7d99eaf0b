"""Invalid workforce data is refused with a message a manager can act on: in services and in the admin."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from employees import services
from employees.models import Duty, Employee, ToolGrant, WorkingWindow
from tests.factories import EmployeeFactory, TeamFactory

pytestmark = pytest.mark.django_db


def _messages(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _admin_employee_post(team, **overrides) -> dict:
    """A complete add-employee form as the admin posts it, with empty inlines."""
    data = {
        "name": "Quinn",
        "handle": "quinn",
        "avatar_colour": "#4f46e5",
        "team": team.pk,
        "manager": "",
        "role_title": "Support specialist",
        "job_description": "Answers questions.",
        "goals": "",
        "tone": "",
        "constraints": "",
        "success_criteria": "",
        "escalation_rules": "",
        "sop": "[]",
        "model_name": "",
        "model_base_url": "",
        "temperature": "0.2",
        "always_on": "on",
        "timezone": "UTC",
        "max_tokens_per_turn": "4000",
        "max_cost_per_task": "0.5",
        "max_cost_per_day": "5",
    }
    for prefix in ("tool_grants", "duties", "working_windows", "brief_versions"):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    data.update(overrides)
    return data


# --- cron -------------------------------------------------------------------------------------


def test_service_refuses_cron_with_minute_61(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.duty_save(
            duty=Duty(employee=employee, name="Sweep", cron="61 * * * *", instructions="x"),
            actor=system_actor,
        )
    assert "'61 * * * *' is not a valid cron expression" in _messages(exc.value)
    assert not Duty.objects.exists()


def test_service_refuses_cron_with_wrong_number_of_fields(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.duty_save(
            duty=Duty(employee=employee, name="Sweep", cron="0 9 * *", instructions="x"),
            actor=system_actor,
        )
    assert "five fields" in _messages(exc.value)


def test_service_accepts_a_valid_cron(system_actor):
    employee = EmployeeFactory()
    duty = services.duty_save(
        duty=Duty(employee=employee, name="Sweep", cron="0 9 * * 1-5", instructions="x"),
        actor=system_actor,
    )
    assert duty.pk is not None


def test_admin_refuses_cron_with_minute_61(admin_client):
    employee = EmployeeFactory()
    response = admin_client.post(
        reverse("admin:employees_duty_add"),
        {
            "employee": employee.pk,
            "name": "Sweep",
            "cron": "61 * * * *",
            "timezone": "UTC",
            "instructions": "x",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "is not a valid cron expression" in response.text
    assert not Duty.objects.exists()


# --- budgets ----------------------------------------------------------------------------------


def test_service_refuses_negative_budget(system_actor):
    team = TeamFactory()
    employee = Employee(
        name="Neg",
        handle="neg",
        team=team,
        role_title="x",
        job_description="y",
        max_cost_per_task=Decimal("-1"),
    )
    with pytest.raises(ValidationError) as exc:
        services.employee_create(employee=employee, actor=system_actor)
    assert "A budget cannot be negative." in _messages(exc.value)
    assert not Employee.objects.filter(handle="neg").exists()


def test_service_refuses_negative_budget_on_update(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.employee_update(
            employee=employee, actor=system_actor, changes={"max_cost_per_day": Decimal("-0.01")}
        )
    assert "A budget cannot be negative." in _messages(exc.value)
    employee.refresh_from_db()
    assert employee.max_cost_per_day == Decimal("5.00")


def test_database_refuses_negative_budget_even_bypassing_validation():
    employee = EmployeeFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Employee.objects.filter(pk=employee.pk).update(max_cost_per_task=Decimal("-5"))


def test_admin_refuses_negative_budget(admin_client):
    team = TeamFactory()
    response = admin_client.post(
        reverse("admin:employees_employee_add"), _admin_employee_post(team, max_cost_per_day="-3")
    )
    assert response.status_code == 200
    assert "A budget cannot be negative." in response.text
    assert not Employee.objects.filter(handle="quinn").exists()


# --- working hours ----------------------------------------------------------------------------


def test_service_refuses_overlapping_windows(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.working_hours_set(
            employee=employee,
            actor=system_actor,
            always_on=False,
            tz="Europe/Berlin",
            windows=[(0, time(9), time(13)), (0, time(12), time(17))],
        )
    assert "Monday: the windows 09:00-13:00 and 12:00-17:00 overlap" in _messages(exc.value)
    assert not WorkingWindow.objects.exists()
    employee.refresh_from_db()
    assert employee.always_on is True


def test_service_refuses_window_ending_before_it_starts(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.working_hours_set(
            employee=employee,
            actor=system_actor,
            always_on=False,
            tz="UTC",
            windows=[(4, time(22), time(2))],
        )
    assert "must end after it starts" in _messages(exc.value)


def test_service_accepts_adjacent_windows_and_on_duty_follows_them(system_actor):
    from datetime import UTC, datetime

    employee = EmployeeFactory()
    services.working_hours_set(
        employee=employee,
        actor=system_actor,
        always_on=False,
        tz="Europe/Berlin",
        windows=[(0, time(9), time(12)), (0, time(12), time(17))],
    )
    # Monday 2026-11-23 10:30 UTC is 11:30 in Berlin: on duty. 17:30 UTC is 18:30: off.
    assert employee.is_on_duty(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    assert not employee.is_on_duty(datetime(2026, 11, 23, 17, 30, tzinfo=UTC))
    assert not employee.is_on_duty(datetime(2026, 11, 22, 10, 30, tzinfo=UTC))  # Sunday


def test_service_refuses_unknown_time_zone(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.working_hours_set(
            employee=employee,
            actor=system_actor,
            always_on=False,
            tz="Mars/Olympus",
            windows=[(0, time(9), time(17))],
        )
    assert "'Mars/Olympus' is not a known time zone" in _messages(exc.value)


def test_admin_refuses_overlapping_windows(admin_client):
    team = TeamFactory()
    data = _admin_employee_post(
        team,
        always_on="",
        **{
            "working_windows-TOTAL_FORMS": "2",
            "working_windows-0-weekday": "2",
            "working_windows-0-start": "09:00",
            "working_windows-0-end": "12:00",
            "working_windows-1-weekday": "2",
            "working_windows-1-start": "11:00",
            "working_windows-1-end": "15:00",
        },
    )
    data.pop("always_on")
    response = admin_client.post(reverse("admin:employees_employee_add"), data)
    assert response.status_code == 200
    assert "Wednesday: the windows 09:00-12:00 and 11:00-15:00 overlap" in response.text
    assert not Employee.objects.filter(handle="quinn").exists()


# --- handles ----------------------------------------------------------------------------------


def test_service_refuses_duplicate_handle(system_actor):
    existing = EmployeeFactory(handle="ava")
    duplicate = Employee(
        name="Other Ava", handle="ava", team=existing.team, role_title="x", job_description="y"
    )
    with pytest.raises(ValidationError) as exc:
        services.employee_create(employee=duplicate, actor=system_actor)
    assert "Another employee already has this handle" in _messages(exc.value)
    assert Employee.objects.filter(handle="ava").count() == 1


def test_admin_refuses_duplicate_handle(admin_client):
    existing = EmployeeFactory(handle="quinn")
    response = admin_client.post(
        reverse("admin:employees_employee_add"), _admin_employee_post(existing.team)
    )
    assert response.status_code == 200
    assert "Another employee already has this handle" in response.text


def test_service_refuses_malformed_handle(system_actor):
    team = TeamFactory()
    employee = Employee(
        name="X", handle="Has Spaces", team=team, role_title="x", job_description="y"
    )
    with pytest.raises(ValidationError) as exc:
        services.employee_create(employee=employee, actor=system_actor)
    assert "lowercase letters" in _messages(exc.value)


# --- tool grants ------------------------------------------------------------------------------


def test_service_refuses_grant_for_unknown_tool(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.tool_grant_save(
            grant=ToolGrant(employee=employee, tool_name="launch_rockets", scope={}),
            actor=system_actor,
        )
    assert "There is no tool called 'launch_rockets'" in _messages(exc.value)
    assert not ToolGrant.objects.exists()


def test_service_refuses_scope_that_does_not_fit_the_tool(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.tool_grant_save(
            grant=ToolGrant(
                employee=employee,
                tool_name="send_email",
                scope={"allowed_domains": ["not a domain"]},
            ),
            actor=system_actor,
        )
    assert (
        'Scope for send_email: scope.allowed_domains[0]: "not a domain" is not in the expected form.'
        in _messages(exc.value)
    )


def test_service_refuses_email_grant_without_domains(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.tool_grant_save(
            grant=ToolGrant(employee=employee, tool_name="send_email", scope={}), actor=system_actor
        )
    assert "Scope for send_email: 'allowed_domains' is required." in _messages(exc.value)


def test_admin_refuses_grant_for_unknown_tool(admin_client):
    employee = EmployeeFactory()
    response = admin_client.post(
        reverse("admin:employees_toolgrant_add"),
        {"employee": employee.pk, "tool_name": "launch_rockets", "policy": "auto", "scope": "{}"},
    )
    assert response.status_code == 200
    assert "launch_rockets is not one of the available choices" in response.text
    assert not ToolGrant.objects.exists()


def test_admin_refuses_scope_that_does_not_fit_the_tool(admin_client):
    employee = EmployeeFactory()
    response = admin_client.post(
        reverse("admin:employees_toolgrant_add"),
        {
            "employee": employee.pk,
            "tool_name": "http_request",
            "policy": "auto",
            "scope": '{"allowed_hosts": []}',
        },
    )
    assert response.status_code == 200
    assert (
        "Scope for http_request: scope.allowed_hosts: must have at least 1 entry." in response.text
    )


# --- SOP --------------------------------------------------------------------------------------


def test_service_refuses_sop_hint_for_unknown_tool(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.employee_update(
            employee=employee,
            actor=system_actor,
            changes={"sop": [{"text": "Do it", "tool": {"name": "teleport"}}]},
        )
    assert "SOP step 1: There is no tool called 'teleport'" in _messages(exc.value)


def test_service_refuses_sop_step_without_text(system_actor):
    employee = EmployeeFactory()
    with pytest.raises(ValidationError) as exc:
        services.employee_update(
            employee=employee, actor=system_actor, changes={"sop": [{"tool": None}]}
        )
    assert "SOP step 1: 'text' is required." in _messages(exc.value)


# --- messages in plain English, with where the problem is -------------------------------------


@pytest.mark.parametrize(
    ("tool_name", "scope", "message"),
    [
        (
            "send_email",
            {"allowed_domains": "example.com"},
            'Scope for send_email: scope.allowed_domains: must be a list of text, not "example.com".',
        ),
        (
            "send_email",
            {"allowed_domains": []},
            "scope.allowed_domains: must have at least 1 entry.",
        ),
        (
            "send_email",
            {"allowed_domains": ["example.com", "example.com"]},
            "scope.allowed_domains: lists an entry twice; each entry must appear once.",
        ),
        (
            "send_email",
            {"allowed_domains": ["example.com"], "cc": True},
            "Scope for send_email: 'cc' is not a known field; use allowed_domains.",
        ),
        (
            "http_request",
            {"allowed_hosts": ["api.example.com"], "allowed_methods": ["GOT"]},
            'scope.allowed_methods[0]: "GOT" is not allowed; use one of "GET", "POST",',
        ),
        (
            "http_request",
            {"allowed_hosts": ["api.example.com"], "timeout_seconds": 500},
            "scope.timeout_seconds: must be at most 120.",
        ),
        ("recall", {"top": 3}, "Scope for recall: takes no settings: leave it empty ({})."),
        ("send_email", [], "Scope for send_email: must be an object ({...}), not []."),
    ],
)
def test_scope_problems_are_said_in_words_with_their_place(tool_name, scope, message):
    from tasks.tools import ToolScopeError, validate_scope

    with pytest.raises(ToolScopeError) as exc:
        validate_scope(tool_name, scope)
    assert message in str(exc.value)
    assert "property" not in str(exc.value) and "should be" not in str(exc.value)


@pytest.mark.parametrize(
    ("sop", "message"),
    [
        (
            [{"text": "Read it"}, {"text": "Look it up", "tool": {"arguments": {}}}],
            "SOP step 2, tool: 'name' is required.",
        ),
        ([{"text": "Read it", "tool": {"name": ""}}], "SOP step 1, tool.name: must not be empty."),
        (
            [{"text": "Read it", "tool": "send_email"}],
            'SOP step 1, tool: must be an object ({...}) or null, not "send_email".',
        ),
        (
            [{"text": "Read it", "tools": []}],
            "SOP step 1: 'tools' is not a known field; use text, tool, when.",
        ),
        ([{"text": "Read it", "when": "order"}], "SOP step 1, when: must be a list of text"),
        ({"text": "Read it"}, "SOP: must be a list of objects"),
    ],
)
def test_sop_problems_are_said_in_words_with_the_step(sop, message):
    from employees.validators import validate_sop

    with pytest.raises(ValidationError) as exc:
        validate_sop(sop)
    assert message in _messages(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[\n  {"text": "Read the ticket"\n   "tool": null}\n]',
            "Line 3, column 4: expected &#x27;,&#x27; or &#x27;}&#x27; after a value.",
        ),
        (
            '[{"text": "a"} {"text": "b"}]',
            "Line 1, column 16: expected &#x27;,&#x27; or &#x27;]&#x27;",
        ),
        ('[{"text": "a"},]', "Line 1, column 15: remove the comma before &#x27;]&#x27;"),
        ("[{'text': 'a'}]", "Line 1, column 3: JSON needs double quotes"),
        ('[{"text": "a", "tool": None}]', "write null in lower case (None is Python, not JSON)"),
        ('[{"text": "a"}', "the JSON ends too early: a closing &#x27;]&#x27; is missing"),
        ('[{"text": "a}]', "this text is never closed"),
    ],
)
def test_admin_says_where_a_json_mistake_is(admin_client, text, message):
    team = TeamFactory()
    response = admin_client.post(
        reverse("admin:employees_employee_add"), _admin_employee_post(team, sop=text)
    )
    assert response.status_code == 200
    assert message in response.text
    assert "Enter a valid JSON" not in response.text
    assert not Employee.objects.filter(handle="quinn").exists()


def test_admin_names_the_step_of_a_schema_mistake(admin_client):
    team = TeamFactory()
    response = admin_client.post(
        reverse("admin:employees_employee_add"),
        _admin_employee_post(team, sop='[{"text": "Read it"}, {"tool": {"name": "recall"}}]'),
    )
    assert "SOP step 2: &#x27;text&#x27; is required." in response.text


def test_admin_shows_json_indented_in_a_box_sized_to_it(admin_client, superuser):
    employee = EmployeeFactory(
        sop=[{"text": "Read it"}, {"text": "Answer", "tool": {"name": "send_email"}}]
    )
    response = admin_client.get(reverse("admin:employees_employee_change", args=[employee.pk]))
    form = response.context["adminform"].form
    assert form["sop"].value().startswith('[\n  {\n    "text": "Read it"')
    html = str(form["sop"])
    assert 'class="json-editor"' in html and 'rows="12"' in html  # its 11 lines, and one to type in
