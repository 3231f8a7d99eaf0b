"""Promoting a shadow employee to active shows its shadow report first and asks to confirm."""

from __future__ import annotations

import pytest
from django.urls import reverse

from approvals.services import approval_decide, escalation_answer
from employees.models import Employee, EmployeeStatus
from tests.evaluations.test_shadow import _approval, _escalation, dana, sia, team  # noqa: F401
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


@pytest.fixture
def morgan(team):  # noqa: F811
    user = UserFactory(username="morgan")
    MembershipFactory(team=team, user=user, role="manager")
    return user


def _status_url(employee) -> str:
    return reverse("employees:profile_status", args=[employee.handle])


def test_promote_shows_the_summary_then_activates_on_confirmation(
    client,
    model_server,
    sia,  # noqa: F811
    dana,  # noqa: F811
    morgan,
):
    approval = _approval(model_server, sia)
    approval_decide(approval=approval, user=dana, decision="approved")
    escalation = _escalation(model_server, sia)
    escalation_answer(escalation=escalation, user=dana, chosen_option="Refuse")
    client.force_login(morgan)
    page = client.get(reverse("employees:profile", args=[sia.handle])).text
    assert "Promote to active…</button>" in page and "Shadow report</a>" in page

    response = client.post(_status_url(sia), {"to": "active"}, headers=HX)
    html = response.text
    assert response.status_code == 200 and html.lstrip().startswith('<section id="profile-status"')
    assert "Promote Sia to active?" in html
    assert "data-promote-rate>50%<" in html and "data-promote-diverged>1<" in html
    assert 'class="shadow-weeks"' in html and html.count("<tr data-week=") == 8
    assert reverse("evaluations:shadow_report", args=[sia.handle]) in html
    assert 'name="confirm" value="yes"' in html
    assert Employee.objects.get(pk=sia.pk).status == EmployeeStatus.SHADOW

    response = client.post(_status_url(sia), {"to": "active", "confirm": "yes"}, headers=HX)
    assert response.headers.get("HX-Refresh") == "true"
    assert Employee.objects.get(pk=sia.pk).status == EmployeeStatus.ACTIVE


def test_without_htmx_the_confirmation_is_the_whole_profile(client, sia, morgan):  # noqa: F811
    client.force_login(morgan)
    response = client.post(_status_url(sia), {"to": "active"})
    assert response.status_code == 200
    assert "<h1>Sia" in response.text and "Promote Sia to active?" in response.text
    assert "no compared case yet" in response.text
    assert Employee.objects.get(pk=sia.pk).status == EmployeeStatus.SHADOW


def test_other_moves_need_no_shadow_confirmation(client, sia, morgan):  # noqa: F811
    Employee.objects.filter(pk=sia.pk).update(status=EmployeeStatus.PAUSED)
    client.force_login(morgan)
    client.post(_status_url(sia), {"to": "active"}, headers=HX)
    assert Employee.objects.get(pk=sia.pk).status == EmployeeStatus.ACTIVE


def test_a_viewer_cannot_promote(client, sia, dana):  # noqa: F811
    client.force_login(dana)
    response = client.post(_status_url(sia), {"to": "active", "confirm": "yes"}, headers=HX)
    assert response.status_code == 403
    assert Employee.objects.get(pk=sia.pk).status == EmployeeStatus.SHADOW
