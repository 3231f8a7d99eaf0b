"""Back office: the rules' defaults and per-employee overrides, every edit audited with its
old and new values (through the real admin views), and the pauses the rules made, read-only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from anomalies.models import DEFAULTS, AnomalyPause, EmployeeRuleOverride, Rule, RuleSettings
from anomalies.services import rule_override_save, rule_settings_update
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db

PARAMETERS = ("threshold", "sample", "multiplier", "floor", "window_minutes")


@pytest.fixture(autouse=True)
def rules(db) -> None:
    """The migration's rows (a transactional test earlier in a run may have flushed them)."""
    for rule, values in DEFAULTS.items():
        RuleSettings.objects.get_or_create(rule=rule, defaults=values)


def _audits(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def _form(row) -> dict:
    """The change form's fields as they are now (an empty value for an empty column)."""
    data = {
        name: "" if getattr(row, name) is None else str(getattr(row, name)) for name in PARAMETERS
    }
    if isinstance(row, RuleSettings):
        data["enabled"] = "on" if row.enabled else ""
    else:
        data |= {"employee": row.employee_id, "rule": row.rule}
        data["enabled"] = {None: "unknown", True: "true", False: "false"}[row.enabled]
    return data


# --- the rules' defaults -----------------------------------------------------------------------


def test_the_rules_list_shows_every_rule_and_an_edit_is_audited_with_old_and_new(
    admin_client, superuser
):
    page = admin_client.get(reverse("admin:anomalies_rulesettings_changelist"))
    assert page.status_code == 200
    for label in Rule.labels:
        assert label in page.content.decode()
    rule = RuleSettings.objects.get(rule=Rule.TOOL_SURGE)
    response = admin_client.post(
        reverse("admin:anomalies_rulesettings_change", args=[rule.pk]),
        _form(rule) | {"threshold": "120", "enabled": ""},
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.threshold, rule.enabled) == (120, False)
    [entry] = _audits("anomaly_rule.changed")
    assert entry.actor_label == superuser.username and entry.subject_id == str(rule.pk)
    assert entry.data == {
        "rule": "tool_surge",
        "changes": {"threshold": [60, 120], "enabled": [True, False]},
    }


def test_an_invalid_default_is_refused_and_nothing_is_audited(admin_client):
    rule = RuleSettings.objects.get(rule=Rule.SPEND_SPIKE)
    response = admin_client.post(
        reverse("admin:anomalies_rulesettings_change", args=[rule.pk]),
        _form(rule) | {"multiplier": "0.5"},
    )
    assert response.status_code == 200  # the form again, with the error
    assert "greater than or equal to 1" in response.content.decode()
    rule.refresh_from_db()
    assert rule.multiplier == Decimal("5")
    assert not _audits("anomaly_rule.changed")


def test_saving_a_default_unchanged_writes_no_audit_entry(admin_client):
    rule = RuleSettings.objects.get(rule=Rule.WAKE_LOOP)
    url = reverse("admin:anomalies_rulesettings_change", args=[rule.pk])
    assert admin_client.post(url, _form(rule)).status_code == 302
    assert not _audits("anomaly_rule.changed")


def test_the_lists_inline_edits_are_audited_row_by_row(admin_client):
    rows = list(RuleSettings.objects.order_by("rule"))
    data = {
        "form-TOTAL_FORMS": str(len(rows)),
        "form-INITIAL_FORMS": str(len(rows)),
        "_save": "Save",
    }
    for n, row in enumerate(rows):
        data[f"form-{n}-id"] = str(row.pk)
        data |= {f"form-{n}-{name}": value for name, value in _form(row).items() if value}
    wake = next(n for n, row in enumerate(rows) if row.rule == Rule.WAKE_LOOP)
    data[f"form-{wake}-threshold"] = "25"
    response = admin_client.post(reverse("admin:anomalies_rulesettings_changelist"), data)
    assert response.status_code == 302
    assert RuleSettings.objects.get(rule=Rule.WAKE_LOOP).threshold == 25
    [entry] = _audits("anomaly_rule.changed")
    assert entry.data == {"rule": "wake_loop", "changes": {"threshold": [10, 25]}}


def test_the_service_refuses_an_invalid_value_and_keeps_the_rule_name(system_actor):
    rule = RuleSettings.objects.get(rule=Rule.ERROR_STREAK)
    rule.threshold = 0
    with pytest.raises(ValidationError):
        rule_settings_update(rule_settings=rule, actor=system_actor)
    assert RuleSettings.objects.get(pk=rule.pk).threshold == 5
    rule.threshold, rule.rule = 7, Rule.WAKE_LOOP  # a rule's row never becomes another rule
    rule_settings_update(rule_settings=rule, actor=system_actor)
    stored = RuleSettings.objects.get(pk=rule.pk)
    assert (stored.rule, stored.threshold) == (Rule.ERROR_STREAK, 7)
    assert [e.data["changes"] for e in _audits("anomaly_rule.changed")] == [{"threshold": [5, 7]}]


def test_rules_cannot_be_added_or_deleted(admin_client):
    rule = RuleSettings.objects.get(rule=Rule.WAKE_LOOP)
    assert admin_client.get(reverse("admin:anomalies_rulesettings_add")).status_code == 403
    delete = reverse("admin:anomalies_rulesettings_delete", args=[rule.pk])
    assert admin_client.get(delete).status_code == 403


# --- per-employee overrides --------------------------------------------------------------------


def test_an_override_added_changed_and_deleted_is_audited_on_the_employees_trail(admin_client):
    employee = EmployeeFactory(handle="quiet")
    response = admin_client.post(
        reverse("admin:anomalies_employeeruleoverride_add"),
        {"employee": employee.pk, "rule": Rule.ERROR_STREAK, "enabled": "false"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    override = EmployeeRuleOverride.objects.get(employee=employee)
    assert override.enabled is False and override.threshold is None
    [created] = _audits("anomaly_override.created")
    assert (created.subject_type, created.subject_id) == ("employees.employee", str(employee.pk))
    assert created.data == {"rule": "error_streak", "values": {"enabled": False}}

    change = reverse("admin:anomalies_employeeruleoverride_change", args=[override.pk])
    response = admin_client.post(change, _form(override) | {"enabled": "unknown", "threshold": "2"})
    assert response.status_code == 302
    [changed] = _audits("anomaly_override.changed")
    assert changed.data == {
        "rule": "error_streak",
        "changes": {"enabled": [False, None], "threshold": [None, 2]},
    }

    delete = reverse("admin:anomalies_employeeruleoverride_delete", args=[override.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not EmployeeRuleOverride.objects.exists()
    [deleted] = _audits("anomaly_override.deleted")
    assert deleted.subject_id == str(employee.pk)
    assert deleted.data == {"rule": "error_streak", "values": {"threshold": 2}}
    changelist = reverse("admin:anomalies_employeeruleoverride_changelist")
    assert admin_client.get(changelist).status_code == 200


def test_deleting_overrides_from_the_list_audits_each(admin_client):
    employees = [EmployeeFactory(handle=f"busy-{n}") for n in range(2)]
    overrides = [
        EmployeeRuleOverride.objects.create(employee=e, rule=Rule.TOOL_SURGE, threshold=200)
        for e in employees
    ]
    response = admin_client.post(
        reverse("admin:anomalies_employeeruleoverride_changelist"),
        {"action": "delete_selected", "_selected_action": [o.pk for o in overrides], "post": "yes"},
    )
    assert response.status_code == 302
    assert not EmployeeRuleOverride.objects.exists()
    entries = _audits("anomaly_override.deleted")
    assert sorted(e.subject_id for e in entries) == sorted(str(e.pk) for e in employees)
    assert {e.data["values"]["threshold"] for e in entries} == {200}


def test_a_second_override_of_one_rule_is_refused_and_not_audited(admin_client, system_actor):
    employee = EmployeeFactory(handle="twice")
    rule_override_save(
        override=EmployeeRuleOverride(employee=employee, rule=Rule.WAKE_LOOP, threshold=3),
        actor=system_actor,
    )
    response = admin_client.post(
        reverse("admin:anomalies_employeeruleoverride_add"),
        {"employee": employee.pk, "rule": Rule.WAKE_LOOP, "enabled": "unknown", "threshold": "4"},
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert EmployeeRuleOverride.objects.get().threshold == 3
    assert len(_audits("anomaly_override.created")) == 1
    with pytest.raises(ValidationError):
        rule_override_save(
            override=EmployeeRuleOverride(employee=employee, rule=Rule.WAKE_LOOP),
            actor=Actor.system("tests"),
        )


# --- the pauses the rules made -----------------------------------------------------------------


def test_the_pauses_are_listed_and_cannot_be_edited(admin_client):
    employee = EmployeeFactory(handle="stopped")
    pause = AnomalyPause.objects.create(
        employee=employee,
        rule=Rule.WAKE_LOOP,
        figures={"created": 11},
        reason="Paused by the wake-loop rule: the same task text arrived 11 times.",
        paused_at=employee.created_at,
    )
    page = admin_client.get(reverse("admin:anomalies_anomalypause_changelist"))
    assert page.status_code == 200 and "arrived 11 times" in page.content.decode()
    change = admin_client.get(reverse("admin:anomalies_anomalypause_change", args=[pause.pk]))
    assert change.status_code == 200  # a view, not a form
    assert 'name="reason"' not in change.content.decode()
    assert admin_client.get(reverse("admin:anomalies_anomalypause_add")).status_code == 403
