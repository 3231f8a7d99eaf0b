"""Back office: the rules' defaults and per-employee overrides."""

from __future__ import annotations

import pytest
from django.urls import reverse

from anomalies.models import EmployeeRuleOverride, Rule, RuleSettings
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


def test_the_rules_list_shows_every_rule_and_edits_a_default(admin_client):
    url = reverse("admin:anomalies_rulesettings_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200
    for label in Rule.labels:
        assert label in page.content.decode()
    rule = RuleSettings.objects.get(rule=Rule.TOOL_SURGE)
    response = admin_client.post(
        reverse("admin:anomalies_rulesettings_change", args=[rule.pk]),
        {"enabled": "on", "threshold": "120"},
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.threshold == 120


def test_rules_cannot_be_added_or_deleted(admin_client):
    rule = RuleSettings.objects.get(rule=Rule.WAKE_LOOP)
    assert admin_client.get(reverse("admin:anomalies_rulesettings_add")).status_code == 403
    delete = reverse("admin:anomalies_rulesettings_delete", args=[rule.pk])
    assert admin_client.get(delete).status_code == 403


def test_an_override_for_one_employee_is_added(admin_client):
    employee = EmployeeFactory(handle="quiet")
    response = admin_client.post(
        reverse("admin:anomalies_employeeruleoverride_add"),
        {"employee": employee.pk, "rule": Rule.ERROR_STREAK, "enabled": "false"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    override = EmployeeRuleOverride.objects.get(employee=employee)
    assert override.enabled is False and override.threshold is None
    assert (
        admin_client.get(reverse("admin:anomalies_employeeruleoverride_changelist")).status_code
        == 200
    )
