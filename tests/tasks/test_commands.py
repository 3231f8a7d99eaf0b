"""The operator commands: assign (with --wait --json), run_task and run_due, run as an operator would."""

from __future__ import annotations

import json

import pytest

from tasks.models import Task, TaskStatus
from tasks.services import task_create
from tests.aiworkforce.helpers import manage
from tests.conftest import EmployeeFactory
from tests.fakes.openai_server import reply
from tests.tasks.test_workers import _test_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def _env(model_server=None) -> dict[str, str]:
    env = {"DATABASE_URL": _test_database_url()}
    if model_server is not None:
        env.update(OPENAI_API_KEY="sk-test-not-a-real-key", OPENAI_BASE_URL=model_server.base_url)
    else:
        env["OPENAI_API_KEY"] = ""
    return env


def test_assign_wait_json_runs_against_an_openai_compatible_server(model_server):
    EmployeeFactory(handle="writer")
    model_server.enqueue(reply("Drafted the reply.", prompt_tokens=300, completion_tokens=40))
    result = manage(
        "assign",
        "@writer",
        "Draft a reply to the customer",
        "--wait",
        "--json",
        env=_env(model_server),
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "done" and outcome["result"] == "Drafted the reply."
    assert outcome["tokens"] == 340 and outcome["cost_usd"] == "0.000069"
    assert model_server.calls == 1


def test_assign_wait_works_offline_and_says_so():
    EmployeeFactory(handle="offliner", sop=[{"text": "Acknowledge the request"}])
    result = manage("assign", "offliner", "Say hello", "--wait", "--json", env=_env())
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "done"
    assert outcome["result"].startswith("[offline mode]")


def test_assign_reports_a_parked_task_and_why(model_server):
    from employees.models import ToolPolicy
    from tests.conftest import ToolGrantFactory

    employee = EmployeeFactory(handle="careful")
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.NEEDS_APPROVAL,
    )
    model_server.enqueue(
        reply(tool_calls=[("send_email", {"to": ["a@example.com"], "subject": "s", "body": "b"})])
    )
    result = manage("assign", "careful", "Email a", "--wait", env=_env(model_server))
    assert result.returncode == 0, result.stderr
    assert (
        "Waiting for approval" in result.stdout
        and "why: Waiting for approval of send_email." in result.stdout
    )


def test_assign_refuses_unknown_handles_and_offboarded_employees_clearly():
    EmployeeFactory(handle="known")
    result = manage("assign", "nobody", "x", env=_env())
    assert result.returncode == 1
    assert "No employee with handle 'nobody'. Known handles: known." in result.stderr
    EmployeeFactory(handle="gone", status="offboarded")
    result = manage("assign", "gone", "x", env=_env())
    assert "has been offboarded and takes no new tasks" in result.stderr
    result = manage("assign", "known", "   ", env=_env())
    assert "A task needs instructions." in result.stderr
    assert not Task.objects.exists()


def test_run_task_prints_each_step_as_it_happens(model_server):
    employee = EmployeeFactory(handle="stepper")
    from employees.models import ToolPolicy
    from tests.conftest import ToolGrantFactory

    ToolGrantFactory(employee=employee, tool_name="create_task", scope={}, policy=ToolPolicy.AUTO)
    task, _ = task_create(
        employee=employee, title="", input="Plan a follow-up", urgent=True, dispatch=False
    )
    model_server.enqueue(
        reply(
            tool_calls=[("create_task", {"title": "Later", "instructions": "Check"})],
            prompt_tokens=100,
            completion_tokens=10,
        ),
        reply("Planned."),
    )
    result = manage("run_task", str(task.pk), env=_env(model_server))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "[1] Model call (gpt-4o-mini) asks for create_task — 100+10 tokens" in "\n".join(lines)
    assert any("create_task done: follow-up task" in line for line in lines)
    assert any("Final answer" in line for line in lines)
    assert lines[-2] == "=> Done"


def test_run_task_explains_why_a_task_cannot_run():
    employee = EmployeeFactory(handle="idle")
    task, _ = task_create(employee=employee, title="", input="x", urgent=True, dispatch=False)
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.DONE)
    result = manage("run_task", str(task.pk), env=_env())
    assert result.returncode == 1
    assert "is done and cannot be run now" in result.stderr
    assert "There is no task #999999." in manage("run_task", "999999", env=_env()).stderr


def test_run_due_makes_one_batch_pass():
    result = manage("run_due", env=_env())
    assert result.returncode == 0, result.stderr
    assert "duty tasks created" in result.stdout and "expired leases reclaimed" in result.stdout
