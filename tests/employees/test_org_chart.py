"""The org chart: teams, human and AI managers, reporting and collaboration lines, live status."""

from __future__ import annotations

import pytest

from employees.demo import load_demo_workforce
from employees.models import Employee, Team, TeamRole, ToolPolicy
from tasks.models import Task, TaskStatus
from tasks.services import task_create
from tests.factories import (
    EmployeeFactory,
    MembershipFactory,
    TeamFactory,
    ToolGrantFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
URL = "/employees/org/"


@pytest.fixture
def member():
    load_demo_workforce()
    user = UserFactory(username="kim", first_name="Kim", last_name="Lee")
    MembershipFactory(team=Team.objects.get(name="Onboarding"), user=user, role=TeamRole.MANAGER)
    return user


def test_org_chart_shows_managers_reporting_and_collaboration_lines(client, member):
    client.force_login(member)
    response = client.get(URL)
    page = response.text
    [unit] = response.context["chart"]  # only the teams the person is in
    assert unit.team.name == "Onboarding"
    assert [m.employee.handle for m in unit.members] == [
        "olivia-onboarding",
        "fay-facilities",
        "hana-hr",
        "ivan-it",
    ]
    assert [m.level for m in unit.members] == [0, 1, 1, 1]
    assert "Kim Lee" in page  # the person managing the team
    assert "AI manager" in page and "reports to @olivia-onboarding" in page
    olivia = unit.members[0]
    assert {e.handle for e, _ in olivia.delegates_to} >= {"hana-hr", "ivan-it", "fay-facilities"}
    assert "Customer Support" not in page


def test_live_status_follows_the_work_and_the_chart_refreshes_itself(client, member):
    client.force_login(member)
    ivan = Employee.objects.get(handle="ivan-it")
    task, _ = task_create(employee=ivan, title="", input="Laptop", dispatch=False)
    fragment = client.get(URL, headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<section id="org-chart"')
    assert "hx-trigger=\"every 5s [document.visibilityState === 'visible']\"" in fragment
    row = fragment.split('data-handle="ivan-it"', 1)[1].split("</li>", 1)[0]
    assert "Has queued work · 1 open" in row
    task.status = "waiting_approval"
    task.save(update_fields=["status"])
    row = client.get(URL, headers={"HX-Request": "true"}).text.split('data-handle="ivan-it"')[1]
    assert "Waiting for a person" in row.split("</li>", 1)[0]


def test_outsiders_see_no_team(client, db):
    load_demo_workforce()
    client.force_login(UserFactory(username="nobody"))
    page = client.get(URL).text
    assert "You are not a member of any team yet" in page and "Onboarding" not in page


def test_collaboration_lines_reach_another_teams_ai_manager_only_if_that_team_accepts(client, db):
    load_demo_workforce()
    sales = TeamFactory(name="Sales")
    sam = EmployeeFactory(handle="sam-sales", team=sales)
    ToolGrantFactory(employee=sam, tool_name="delegate", scope={}, policy=ToolPolicy.AUTO)
    client.force_login(MembershipFactory(team=sales).user)

    def sams_lines():
        [unit] = client.get(URL).context["chart"]
        [row] = [m for m in unit.members if m.employee.handle == "sam-sales"]
        return {other.handle: line for other, line in row.delegates_to}

    assert "olivia-onboarding" not in sams_lines()  # the demo's Onboarding team does not accept
    assert 'data-accepts-requests="no"' in client.get(URL).text
    Team.objects.filter(name="Onboarding").update(accepts_requests_from_other_teams=True)
    assert sams_lines()["olivia-onboarding"] == "manager employee of Onboarding"


def test_an_employee_whose_model_settings_are_wrong_shows_a_problem(client, member):
    client.force_login(member)
    ivan = Employee.objects.get(handle="ivan-it")
    task, _ = task_create(employee=ivan, title="", input="Laptop", dispatch=False)
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.MODEL_MISCONFIGURED)
    fragment = client.get(URL, headers={"HX-Request": "true"}).text
    row = fragment.split('data-handle="ivan-it"', 1)[1].split("</li>", 1)[0]
    assert "Model settings wrong · 1 open" in row and "work-problem" in row
