"""`manage evaluate`: golden tasks run in shadow through the real loop, with the offline engine
and with an OpenAI-compatible endpoint; nothing they propose happens."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from approvals.models import ApprovalRequest, ApprovalStatus, Escalation, EscalationStatus
from employees.models import BriefVersion, EmployeeStatus, MemoryEntry
from evaluations.models import CaseResult, EvaluationRun
from evaluations.services import golden_task_create
from tasks.models import OutboxEmail, Task, TaskSource, TaskStatus
from tests.factories import EmployeeFactory, ToolGrantFactory
from tests.fakes.openai_server import reply

pytestmark = pytest.mark.django_db

REPLY_STEP = {
    "text": "Reply to the customer.",
    "tool": {
        "name": "send_email",
        "arguments": {"to": ["{first_email}"], "subject": "Re: {title}", "body": "Refunded."},
    },
}


@pytest.fixture
def offline(settings):
    settings.OPENAI_API_KEY = ""


@pytest.fixture
def clerk(db):
    employee = EmployeeFactory(handle="clerk", status=EmployeeStatus.ACTIVE, sop=[REPLY_STEP])
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy="needs_approval",
    )
    ToolGrantFactory(employee=employee, tool_name="escalate_to_human", policy="auto")
    ToolGrantFactory(employee=employee, tool_name="create_task", policy="auto")
    return employee


def golden(employee, title="Refund", text="Refund ann@example.com for order A-1.", **expected):
    expected = expected or {
        "calls": [{"tool": "send_email", "arguments": {"to": ["ann@example.com"]}}]
    }
    return golden_task_create(employee=employee, title=title, input=text, expectations=expected)


def evaluate(*args) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("evaluate", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return code, out.getvalue(), err.getvalue()


def assert_nothing_happened():
    assert not OutboxEmail.objects.exists()
    assert not ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING).exists()
    assert not Escalation.objects.filter(status=EscalationStatus.OPEN).exists()
    assert not MemoryEntry.objects.exists()  # no episode, no "remember"
    assert not Task.objects.exclude(source=TaskSource.EVALUATION).exists()  # no follow-up
    assert not Task.objects.exclude(status__in=[TaskStatus.DONE, TaskStatus.CANCELLED]).exists()


def test_offline_every_case_passes_exit_0_and_the_email_is_only_proposed(offline, clerk):
    golden(clerk)
    code, out, err = evaluate("clerk")
    assert code == 0, out
    assert "PASS" in out and "1/1 passed (100%)" in out
    assert "[1/1] pass" in err  # progress on stderr
    (result,) = CaseResult.objects.all()
    assert result.task.source == TaskSource.EVALUATION and result.task.status == TaskStatus.DONE
    (step,) = result.task.steps.filter(kind="tool_call")
    assert step.payload["status"] == "proposed"
    assert_nothing_happened()


def test_a_failing_case_is_explained_and_exits_1(offline, clerk):
    golden(clerk)
    golden(clerk, title="Angry", text="Angry customer bob@example.com", escalates=True)
    code, out, _ = evaluate("clerk")
    assert code == 1
    assert "FAIL" in out and "- expected an escalation" in out and "1/2 passed (50%)" in out


def test_json_output(offline, clerk):
    first = golden(clerk)
    golden(clerk, title="Quiet", text="Say hi to ann@example.com", not_calls=["send_email"])
    code, out, _ = evaluate("clerk", "--json")
    data = json.loads(out)
    assert code == 1
    assert data["employee"] == "clerk" and data["cases"] == 2 and data["passed"] == 1
    assert data["brief_version"] is None
    assert data["results"][0]["golden_task"] == first.pk and data["results"][0]["passed"]
    assert data["results"][1]["failures"] == ["must not call send_email, called it 1 time(s)"]


def test_a_brief_version_runs_with_its_sop(offline, clerk):
    golden(clerk)
    BriefVersion.objects.create(employee=clerk, number=1, brief={}, sop=[{"text": "Think."}])
    BriefVersion.objects.create(employee=clerk, number=2, brief={}, sop=[REPLY_STEP])
    assert evaluate("clerk", "--brief-version", "1")[0] == 1
    code, out, _ = evaluate("clerk", "--json")  # the latest version by default
    assert code == 0 and json.loads(out)["brief_version"] == 2
    assert list(EvaluationRun.objects.order_by("id").values_list("brief_version", "passed")) == [
        (1, 0),
        (2, 1),
    ]
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP]  # the employee itself is untouched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "There is no employee @nobody."),
        (["clerk", "--brief-version", "7"], "has no brief version 7 (no saved versions)"),
        (["clerk", "--concurrency", "0"], "--concurrency takes 1 to 64"),
    ],
)
def test_refusals_exit_2(offline, clerk, args, message):
    golden(clerk)
    code, _, error = evaluate(*args)
    assert code == 2 and message in error


def test_no_golden_tasks_exit_2(offline, clerk):
    code, _, error = evaluate("clerk")
    assert code == 2 and "has no golden tasks" in error


def test_a_paused_employee_is_evaluated_and_an_offboarded_one_is_not(offline, clerk):
    golden(clerk)
    clerk.status = EmployeeStatus.PAUSED  # e.g. by an anomaly rule: a better brief must pass
    clerk.save()
    code, out, _ = evaluate("clerk")
    assert code == 0, out
    assert_nothing_happened()
    clerk.status = EmployeeStatus.OFFBOARDED
    clerk.save()
    code, _, error = evaluate("clerk")
    assert code == 2 and "an offboarded employee is not evaluated" in error


def test_against_the_endpoint_nothing_is_executed_or_asked(model_server, clerk):
    golden(clerk, answer_contains=["refunded"], max_steps=3, calls=[{"tool": "send_email"}])
    model_server.enqueue(
        reply(
            tool_calls=[
                ("send_email", {"to": ["ann@example.com"], "subject": "Hi", "body": "x"}),
                ("create_task", {"title": "Later", "instructions": "Check"}),
                ("escalate_to_human", {"summary": "?", "options": ["a", "b"]}),
            ]
        ),
        reply("I refunded the order."),
    )
    code, out, _ = evaluate("clerk", "--json")
    assert code == 0, out
    assert json.loads(out)["results"][0]["steps"] == 2
    statuses = [
        s.payload["status"] for s in CaseResult.objects.get().task.steps.filter(kind="tool_call")
    ]
    assert statuses == ["proposed", "proposed", "proposed"]
    assert_nothing_happened()


def test_a_case_the_loop_breaker_stops_leaves_no_open_escalation(model_server, clerk, settings):
    settings.MAX_STEPS_PER_TASK = 1
    golden(clerk)
    model_server.default = reply(tool_calls=[("create_task", {"title": "x", "instructions": "y"})])
    code, out, _ = evaluate("clerk")
    assert code == 1 and "did not finish" in out
    assert_nothing_happened()


@pytest.mark.django_db(transaction=True)
def test_cases_run_concurrently_against_the_endpoint(model_server, clerk):
    for n in range(6):
        golden(clerk, title=f"Case {n}", answer_contains=["done"])
    model_server.default = reply("All done.")
    code, out, _ = evaluate("clerk", "--concurrency", "3", "--json")
    data = json.loads(out)
    assert code == 0 and data["cases"] == 6 and data["passed"] == 6
    assert EvaluationRun.objects.get().concurrency == 3
