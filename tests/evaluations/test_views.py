"""The one-click golden task on a task page, and the evaluations page's permissions."""

from __future__ import annotations

import pytest

from employees.models import TeamRole
from evaluations.models import CaseResult, EvaluationRun, GoldenTask
from evaluations.services import golden_task_create
from tasks.loop import run_task
from tasks.models import TaskStatus
from tests.factories import (
    EmployeeFactory,
    MembershipFactory,
    ToolGrantFactory,
    UserFactory,
    assigned_task,
)
from tests.fakes.openai_server import reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk(db):
    employee = EmployeeFactory(handle="clerk")
    ToolGrantFactory(employee=employee, tool_name="create_task", policy="auto")
    return employee


@pytest.fixture
def manager(clerk):
    user = UserFactory(username="mona")
    MembershipFactory(team=clerk.team, user=user, role=TeamRole.MANAGER)
    return user


@pytest.fixture
def done_task(model_server, clerk):
    model_server.enqueue(
        reply(tool_calls=[("create_task", {"title": "Later", "instructions": "Call back"})]),
        reply("Scheduled a call back."),
    )
    task = assigned_task(clerk, "Call the customer back tomorrow.", dispatch=False)
    assert run_task(task.pk) == TaskStatus.DONE
    return task


def test_a_manager_makes_a_finished_task_a_golden_task_in_one_click(client, manager, done_task):
    client.force_login(manager)
    button = client.get(f"/evaluations/tasks/{done_task.pk}/golden/button/").text
    assert "Make it a golden task" in button

    response = client.post(
        f"/evaluations/tasks/{done_task.pk}/golden/", headers={"HX-Request": "true"}
    )

    assert response.status_code == 200 and "Golden task #" in response.text
    golden = GoldenTask.objects.get()
    assert golden.input == done_task.input and golden.source_task == done_task
    assert golden.expectations == {
        "calls": [
            {"tool": "create_task", "arguments": {"title": "Later", "instructions": "Call back"}}
        ]
    }
    client.post(f"/evaluations/tasks/{done_task.pk}/golden/")  # a second click adds nothing
    assert GoldenTask.objects.count() == 1


def test_the_task_page_loads_the_golden_button(client, manager, done_task):
    client.force_login(manager)
    page = client.get(f"/tasks/{done_task.pk}/").text
    assert f"/evaluations/tasks/{done_task.pk}/golden/button/" in page


def test_a_team_member_who_is_not_a_manager_may_not(client, clerk, done_task):
    member = UserFactory(username="amy")
    MembershipFactory(team=clerk.team, user=member, role=TeamRole.APPROVER)
    client.force_login(member)
    assert (
        "Make it a golden task"
        not in client.get(f"/evaluations/tasks/{done_task.pk}/golden/button/").text
    )
    assert client.post(f"/evaluations/tasks/{done_task.pk}/golden/").status_code == 403
    assert not GoldenTask.objects.exists()


def test_an_outsider_gets_404(client, done_task):
    client.force_login(UserFactory(username="eve"))
    assert client.post(f"/evaluations/tasks/{done_task.pk}/golden/").status_code == 404
    assert client.get("/evaluations/clerk/").status_code == 404


def test_an_unfinished_task_is_refused(client, manager, clerk):
    task = assigned_task(clerk, "Not yet.", dispatch=False)
    client.force_login(manager)
    response = client.post(f"/evaluations/tasks/{task.pk}/golden/")
    assert response.status_code == 400 and "finished successfully" in response.text


def test_the_page_shows_rates_per_version_and_failing_traces(client, manager, clerk, done_task):
    golden = golden_task_create(
        employee=clerk, title="Call back", input="x", expectations={"escalates": True}
    )
    for version, passed in ((1, 1), (2, 0)):
        run = EvaluationRun.objects.create(
            employee=clerk, brief_version=version, model="m", cases=1, passed=passed
        )
        EvaluationRun.objects.filter(pk=run.pk).update(finished_at=run.started_at)
    CaseResult.objects.create(
        run=run,
        golden_task=golden,
        passed=False,
        failures=["expected an escalation"],
        task=done_task,
    )
    client.force_login(manager)
    page = client.get("/evaluations/clerk/").text
    assert 'data-version="v1"><strong>v1</strong> 100%' in page
    assert 'data-version="v2"><strong>v2</strong> 0%' in page
    assert f'href="/tasks/{done_task.pk}/"' in page and "expected an escalation" in page
    assert 'id="eval-chart-data"' in page


def test_the_page_without_runs(client, manager):
    client.force_login(manager)
    assert "No evaluation has run yet." in client.get("/evaluations/clerk/").text


def test_the_back_office_validates_expectations(admin_client, clerk):
    response = admin_client.post(
        "/admin/evaluations/goldentask/add/",
        {"employee": clerk.pk, "title": "t", "input": "i", "expectations": '{"max_steps": 0}'},
    )
    assert response.status_code == 200 and "expectations.max_steps" in response.text
    assert not GoldenTask.objects.exists()
