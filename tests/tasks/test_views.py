"""Task pages: scoped to the viewer's teams; the trace refreshes itself while work goes on."""

from __future__ import annotations

import pytest

from tasks.loop import run_task
from tasks.services import task_create
from tests.factories import EmployeeFactory, MembershipFactory, UserFactory
from tests.fakes.openai_server import reply

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_task(model_server, clerk):
    model_server.enqueue(
        reply(
            tool_calls=[("create_task", {"title": "Later", "instructions": "Check again"})],
            prompt_tokens=120,
            completion_tokens=30,
        ),
        reply("Scheduled a follow-up.", prompt_tokens=150, completion_tokens=10),
    )
    task, _ = task_create(
        employee=clerk, title="Check the order", input="Order 42 is late.", urgent=True
    )
    run_task(task.pk)
    return task


def test_member_sees_the_trace_with_tokens_cost_and_result(client, finished_task):
    client.force_login(MembershipFactory(team=finished_task.employee.team).user)
    page = client.get(f"/tasks/{finished_task.pk}/").text
    assert "Scheduled a follow-up." in page
    assert "create_task done: follow-up task" in page
    assert "120+30 tokens" in page
    assert "Order 42 is late." in page and "untrusted" in page
    assert "every 1s" not in page  # finished: no more polling


def test_unfinished_task_page_polls_for_updates(client, clerk):
    task, _ = task_create(employee=clerk, title="", input="Later", urgent=True)
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{task.pk}/").text
    assert "hx-trigger=\"every 1s [document.visibilityState === 'visible']\"" in page
    fragment = client.get(f"/tasks/{task.pk}/", headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<section id="trace"') and "<html" not in fragment


@pytest.mark.parametrize("htmx", [False, True])
def test_other_teams_tasks_are_404_on_page_and_fragment(client, finished_task, htmx):
    outsider = MembershipFactory(team=EmployeeFactory().team).user
    client.force_login(outsider)
    headers = {"HX-Request": "true"} if htmx else {}
    assert client.get(f"/tasks/{finished_task.pk}/", headers=headers).status_code == 404
    assert "Check the order" not in client.get("/tasks/").text


def test_task_list_filters_by_status(client, finished_task):
    client.force_login(UserFactory(is_superuser=True))
    assert "Check the order" in client.get("/tasks/", {"status": "done"}).text
    assert "Check the order" not in client.get("/tasks/", {"status": "failed"}).text


def test_offline_mode_is_labelled_on_the_task_page(client, clerk, settings):
    settings.OPENAI_API_KEY = ""
    clerk.sop = [{"text": "Say hello"}]
    clerk.save()
    task, _ = task_create(employee=clerk, title="", input="Hi", urgent=True)
    run_task(task.pk)
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{task.pk}/").text
    assert "[offline mode] Followed the standard operating procedure" in page
    assert "Offline mode: no model endpoint is configured" in page
    assert "offline engine" in page
