"""Employees an anomaly rule paused come first on the dashboard, marked with their rule."""

from __future__ import annotations

import pytest
from django.urls import reverse

from aiworkforce.audit import Actor
from anomalies.models import EmployeeRuleOverride, Rule
from anomalies.services import anomalies_evaluate
from dashboard.selectors import needs_me
from employees.selectors import employees_visible_to
from employees.services import employee_activate, employee_pause
from tasks.models import TaskStatus
from tests.dashboard.conftest import make_task
from tests.factories import EmployeeFactory, assigned_task

pytestmark = pytest.mark.django_db

LOOP = "Webhook: order 17 updated"


def _paused_by_the_wake_loop_rule(employee) -> None:
    """The rules' own pass pauses it: the same text arrived twice (the limit: once)."""
    EmployeeRuleOverride.objects.create(employee=employee, rule=Rule.WAKE_LOOP, threshold=1)
    assigned_task(employee, LOOP)
    assigned_task(employee, LOOP)
    assert anomalies_evaluate() == 1
    employee.refresh_from_db()


@pytest.fixture
def pauses(office):
    """Ava paused by a rule first; then Ben paused by a person (later, with a reason that
    reads like a rule's); Cleo paused by a rule, resumed, then paused by a person."""
    person = Actor.for_user(office.manager)
    _paused_by_the_wake_loop_rule(office.ava)
    employee_pause(
        employee=office.ben, actor=person, reason="Paused by the spend-spike rule: I think."
    )
    cleo = EmployeeFactory(name="Cleo", handle="cleo", team=office.team_a)
    _paused_by_the_wake_loop_rule(cleo)
    employee_activate(employee=cleo, actor=person)
    cleo = employee_pause(employee=cleo, actor=person, reason="Paused by Morgan.")
    return office


def test_needs_me_lists_rule_pauses_first_and_only_the_current_ones_as_such(pauses):
    office = pauses
    needs = needs_me(office.manager, employees=list(employees_visible_to(office.manager)))
    # A rule's pause first, though the people's pauses are more recent; then latest first.
    assert [e.handle for e in needs.paused] == ["ava", "cleo", "ben"]
    assert [e.handle for e in needs.paused_by_rule] == ["ava"]
    assert needs.paused[0].anomaly_pause.rule == Rule.WAKE_LOOP
    assert needs.paused[0].anomaly_pause.reason == needs.paused[0].status_reason
    # Cleo's rule pause ended with the resume; Ben's reason only looks like a rule's.
    assert [e.handle for e in needs.paused_otherwise] == ["cleo", "ben"]


def test_the_page_shows_rule_pauses_before_anything_else_with_their_reason(client, pauses):
    office = pauses
    failed = make_task(office.ava, TaskStatus.BUDGET_EXHAUSTED, title="Stopped work")
    client.force_login(office.manager)
    html = client.get(reverse("dashboard:home")).content.decode()
    top = html.index("Paused by an anomaly rule")
    assert top < html.index('data-need="approvals"') < html.index(f"#{failed.pk} Stopped work")
    assert html.index(f"#{failed.pk} Stopped work") < html.index("Other paused employees")
    block = html[top : html.index('data-need="approvals"')]
    assert "Paused by rule: wake loop" in block
    assert "Paused by the wake-loop rule: the same task text arrived 2 times" in block
    assert f"{reverse('employees:profile', args=['ava'])}#profile-status" in block
    assert "@ben" not in block and "@cleo" not in block
    others = html[html.index("Other paused employees") :]
    assert "Paused by the spend-spike rule: I think." in others
    assert "Paused by rule:" not in others
    assert 'class="need-tile trouble" href="#rule-pauses-heading" data-need="paused"' in html


def test_without_rule_pauses_the_paused_list_is_as_before(client, office):
    employee_pause(employee=office.ben, actor=Actor.system("tests"), reason="Holiday.")
    client.force_login(office.manager)
    html = client.get(reverse("dashboard:home")).content.decode()
    assert "Paused by an anomaly rule" not in html and "Paused by rule:" not in html
    assert '<h3 id="paused-employees">Paused employees</h3>' in html and "Holiday." in html


def test_a_rule_pause_of_another_team_is_not_shown(client, office):
    _paused_by_the_wake_loop_rule(office.zed)  # Finance: not the viewer's team
    client.force_login(office.viewer_a)
    html = client.get(reverse("dashboard:home")).content.decode()
    assert "Paused by an anomaly rule" not in html and "@zed" not in html
