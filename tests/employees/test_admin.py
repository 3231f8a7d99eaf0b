"""The back office: every model's pages load, and lifecycle actions go through audited services."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.urls import reverse

from aiworkforce.audit import Actor, audit_log
from aiworkforce.models import AuditEntry
from employees.demo import load_demo_workforce
from employees.models import Employee, EmployeeStatus, Team

pytestmark = pytest.mark.django_db

APPS = {"aiworkforce", "employees", "tasks", "approvals"}


def test_every_project_model_is_registered():
    from django.apps import apps

    models = [m for m in apps.get_models() if m._meta.app_label in APPS]
    missing = [m._meta.label for m in models if m not in admin.site._registry]
    assert missing == []


def test_every_changelist_and_change_page_loads(admin_client, superuser):
    load_demo_workforce(owner=superuser)
    for model, _ in admin.site._registry.items():
        if model._meta.app_label not in APPS:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url
        obj = model.objects.first()
        if obj is not None:
            url = reverse(
                f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk]
            )
            assert admin_client.get(url).status_code == 200, url


def test_employee_list_shows_status_badges_and_filters(admin_client, superuser):
    load_demo_workforce(owner=superuser)
    response = admin_client.get(
        reverse("admin:employees_employee_changelist"), {"status__exact": "shadow"}
    )
    assert "Nia" in response.text and "Ava" not in response.text
    assert ">Shadow</span>" in response.text
    response = admin_client.get(reverse("admin:employees_employee_changelist"), {"q": "triage"})
    assert "Ava" in response.text and "Rex" not in response.text


@pytest.mark.parametrize(
    ("action", "start", "end", "audit_action"),
    [
        ("activate", EmployeeStatus.DRAFT, EmployeeStatus.ACTIVE, "employee.activated"),
        ("pause", EmployeeStatus.ACTIVE, EmployeeStatus.PAUSED, "employee.paused"),
        ("offboard", EmployeeStatus.ACTIVE, EmployeeStatus.OFFBOARDED, "employee.offboarded"),
    ],
)
def test_lifecycle_actions_call_audited_services(
    admin_client, superuser, action, start, end, audit_action
):
    from tests.factories import EmployeeFactory

    employee = EmployeeFactory(status=start)
    response = admin_client.post(
        reverse("admin:employees_employee_changelist"),
        {"action": action, "_selected_action": [employee.pk]},
        follow=True,
    )
    assert response.status_code == 200
    employee.refresh_from_db()
    assert employee.status == end
    entry = AuditEntry.objects.get(action=audit_action)
    assert entry.actor_user_id == superuser.pk and entry.subject_id == str(employee.pk)


def test_refused_action_explains_itself(admin_client):
    from tests.factories import EmployeeFactory

    employee = EmployeeFactory(status=EmployeeStatus.OFFBOARDED)
    response = admin_client.post(
        reverse("admin:employees_employee_changelist"),
        {"action": "activate", "_selected_action": [employee.pk]},
        follow=True,
    )
    assert "is offboarded and cannot become active" in response.text


def _change_form_data(response) -> dict:
    """Everything the admin change page would post back unchanged: main form and inlines."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update(
            {management.add_prefix(name): value for name, value in management.initial.items()}
        )
        forms.extend(inline.formset.forms)
    for form in forms:
        for name, field in form.fields.items():
            value = form[name].value()
            if value is None or value is False:
                continue
            if isinstance(value, dict | list):
                value = json.dumps(value)
            data[form.add_prefix(name)] = (
                field.prepare_value(value) if not isinstance(value, str) else value
            )
    return data


def test_editing_the_brief_in_the_admin_adds_a_history_row(admin_client, superuser):
    load_demo_workforce(owner=superuser)
    ava = Employee.objects.get(handle="ava-support")
    ava.golden_tasks.all().delete()  # with golden tasks it would be a draft (test below)
    url = reverse("admin:employees_employee_change", args=[ava.pk])
    data = _change_form_data(admin_client.get(url))
    data["goals"] = "Answer within 30 minutes."
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["errors"]
    ava.refresh_from_db()
    assert ava.goals == "Answer within 30 minutes."
    assert ava.working_windows.count() == 5  # the inlines were saved back unchanged
    latest = ava.brief_versions.order_by("-number").first()
    assert latest.number == 2 and latest.author == superuser
    assert AuditEntry.objects.filter(action="employee.updated", subject_id=str(ava.pk)).exists()
    assert "Brief history (read-only)" in admin_client.get(url).text


def test_a_brief_edit_of_an_employee_with_golden_tasks_is_saved_as_a_draft(admin_client, superuser):
    load_demo_workforce(owner=superuser)
    ava = Employee.objects.get(handle="ava-support")
    assert ava.golden_tasks.exists()
    live_goals = ava.goals
    url = reverse("admin:employees_employee_change", args=[ava.pk])
    data = _change_form_data(admin_client.get(url))
    data["goals"] = "Answer within 30 minutes."
    data["role_title"] = "Senior support agent"
    response = admin_client.post(url, data, follow=True)
    assert response.status_code == 200
    assert "saved as draft v2; the live brief is unchanged" in response.text
    ava.refresh_from_db()
    assert ava.goals == live_goals and ava.role_title == "Senior support agent"
    draft = ava.brief_versions.get(number=2)
    assert draft.is_draft and draft.brief["goals"] == "Answer within 30 minutes."
    assert AuditEntry.objects.filter(action="brief_version.drafted").exists()


def test_a_manager_opens_a_team_to_requests_from_other_teams_in_the_admin(admin_client, superuser):
    load_demo_workforce(owner=superuser)
    team = Team.objects.get(name="Onboarding")
    assert team.accepts_requests_from_other_teams is False
    url = reverse("admin:employees_team_change", args=[team.pk])
    page = admin_client.get(url)
    assert "Accepts requests from other teams" in page.text
    data = _change_form_data(page)
    data["accepts_requests_from_other_teams"] = "on"
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["errors"]
    team.refresh_from_db()
    assert team.accepts_requests_from_other_teams is True
    entry = AuditEntry.objects.get(action="team.updated", subject_id=str(team.pk))
    assert entry.actor_user_id == superuser.pk
    assert entry.data == {"accepts_requests_from_other_teams": True}
    listing = admin_client.get(reverse("admin:employees_team_changelist"))
    assert "Accepts requests from other teams" in listing.text


def test_audit_admin_is_read_only(admin_client):
    entry = audit_log(action="system.checked", actor=Actor.system())
    url = reverse("admin:aiworkforce_auditentry_change", args=[entry.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"action": "x.y"}).status_code == 403
    assert admin_client.get(reverse("admin:aiworkforce_auditentry_add")).status_code == 403


def test_admin_is_titled_for_the_product(admin_client):
    assert "AI Workforce back office" in admin_client.get(reverse("admin:index")).text


def _fieldsets(response) -> dict[str, bool]:
    """Fieldset name -> whether it starts collapsed."""
    return {fieldset.name: fieldset.is_collapsible for fieldset in response.context["adminform"]}


def test_employee_page_opens_on_what_is_read_every_time(admin_client, superuser):
    load_demo_workforce(owner=superuser)
    ava = Employee.objects.get(handle="ava-support")
    response = admin_client.get(reverse("admin:employees_employee_change", args=[ava.pk]))
    assert _fieldsets(response) == {
        "Identity": False,
        "Organisation": True,
        "Brief": True,
        "Standard operating procedure": True,
        "Model": True,
        "Working hours": False,
        "Budgets": False,
        "Memory": True,
        "Lifecycle": True,
    }
    inlines = response.context["inline_admin_formsets"]
    assert [inline.opts.verbose_name_plural for inline in inlines] == [
        "tool grants",
        "duties",
        "working windows",
        "Brief history (read-only)",
    ]
    assert all(inline.is_collapsible for inline in inlines)


def test_a_group_with_a_mistake_opens_by_itself(admin_client, superuser):
    load_demo_workforce(owner=superuser)
    ava = Employee.objects.get(handle="ava-support")
    url = reverse("admin:employees_employee_change", args=[ava.pk])
    data = _change_form_data(admin_client.get(url))
    data["sop"] = '[{"text": "Read it",}]'
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert _fieldsets(response)["Standard operating procedure"] is False
    assert _fieldsets(response)["Brief"] is True
    assert "Line 1, column 20: remove the comma before &#x27;}&#x27;" in response.text


def test_a_grant_says_what_its_scope_takes(admin_client, superuser):
    load_demo_workforce(owner=superuser)
    ava = Employee.objects.get(handle="ava-support")
    page = admin_client.get(reverse("admin:employees_employee_change", args=[ava.pk])).text
    assert "allowed_domains (required): a list of text, at least 1 entry" in page
    grant = ava.tool_grants.get(tool_name="send_email")
    page = admin_client.get(reverse("admin:employees_toolgrant_change", args=[grant.pk])).text
    assert "allowed_domains (required): a list of text, at least 1 entry" in page
    recall = ava.tool_grants.get(tool_name="recall")
    page = admin_client.get(reverse("admin:employees_toolgrant_change", args=[recall.pk])).text
    assert "Nothing: leave the scope as {}." in page
