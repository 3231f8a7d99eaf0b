"""Delegation in the loop, run in this process: linked tasks, joins, refusals, budgets, deadlines."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from aiworkforce.models import AuditEntry
from approvals.models import ApprovalRequest, ApprovalStatus, Escalation
from approvals.services import approval_decide, escalation_answer
from employees.demo import ONBOARDING_REQUEST, load_demo_workforce
from employees.models import Employee, EmployeeStatus, ToolPolicy
from tasks.loop import run_task
from tasks.models import Step, StepKind, Task, TaskSource, TaskStatus
from tasks.services import parent_wake_if_ready, task_cancel, task_create
from tests.factories import EmployeeFactory, TeamFactory, ToolGrantFactory, UserFactory
from tests.fakes.openai_server import dynamic, error, reply

pytestmark = pytest.mark.django_db


def _delegate(to: str, instructions: str = "Do your part.", **extra) -> tuple[str, dict]:
    return (
        "delegate",
        {"to": to, "instructions": instructions, "expected_result": "Done.", **extra},
    )


def _run_queued(limit: int = 30) -> list[int]:
    """Run queued tasks in id order until none is left, as workers would."""
    ran = []
    for _ in range(limit):
        task = Task.objects.filter(status=TaskStatus.QUEUED).order_by("pk").first()
        if task is None:
            return ran
        run_task(task.pk)
        ran.append(task.pk)
    raise AssertionError("tasks kept being queued")


def _by_handle(body: dict) -> str:
    system = body["messages"][0]["content"]
    return system.split("(@", 1)[1].split(")", 1)[0]


@pytest.fixture
def team():
    """A lead that may delegate, two specialists in its team, and an outsider team."""
    ops = TeamFactory(name="Ops")
    lead = EmployeeFactory(handle="lead", name="Lead", team=ops, is_manager=True)
    ToolGrantFactory(employee=lead, tool_name="delegate", scope={}, policy=ToolPolicy.AUTO)
    one = EmployeeFactory(handle="one", name="One", team=ops, reports_to=lead)
    two = EmployeeFactory(handle="two", name="Two", team=ops, reports_to=lead)
    for employee in (one, two):
        ToolGrantFactory(employee=employee, tool_name="delegate", scope={}, policy=ToolPolicy.AUTO)
    return {"lead": lead, "one": one, "two": two}


def test_onboarding_demo_runs_offline_with_one_approval_and_assembles_the_results(settings):
    settings.OPENAI_API_KEY = ""
    load_demo_workforce()
    olivia = Employee.objects.get(handle="olivia-onboarding")
    root, _ = task_create(employee=olivia, title="", input=ONBOARDING_REQUEST, urgent=True)
    _run_queued()
    root.refresh_from_db()
    assert root.status == TaskStatus.WAITING_CHILDREN
    children = {c.employee.handle: c for c in Task.objects.filter(parent=root)}
    assert set(children) == {"hana-hr", "ivan-it", "fay-facilities"}
    assert {c.source for c in children.values()} == {TaskSource.DELEGATION}
    assert all(c.root_id == root.pk and c.depth == 1 for c in children.values())
    statuses = {h: Task.objects.get(pk=c.pk).status for h, c in children.items()}
    assert statuses == {
        "hana-hr": TaskStatus.DONE,
        "ivan-it": TaskStatus.WAITING_APPROVAL,
        "fay-facilities": TaskStatus.DONE,
    }
    # The three delegations went out together (parallel calls of one model answer).
    [first_call] = Step.objects.filter(task=root, kind=StepKind.LLM_CALL)[:1]
    assert len(first_call.payload["message"]["tool_calls"]) == 3
    [approval] = ApprovalRequest.objects.all()
    assert approval.task.employee.handle == "ivan-it" and "Laptop" in approval.arguments["subject"]

    approval_decide(approval=approval, user=UserFactory(), decision=ApprovalStatus.APPROVED)
    _run_queued()
    root.refresh_from_db()
    assert root.status == TaskStatus.DONE
    assert "What the delegated requests reported:" in root.result
    for handle in ("hana-hr", "ivan-it", "fay-facilities"):
        assert f"@{handle}" in root.result
    assert "Laptop order for a new starter" in root.result
    # The parent resumed from its recorded steps: its first model answer was not asked again.
    assert Step.objects.filter(task=root, kind=StepKind.DELEGATION).count() == 3
    assert AuditEntry.objects.filter(action="task.delegated").count() == 3


def test_join_waits_for_every_child_and_makes_no_model_call_in_between(model_server, team):
    script = {
        "lead": [
            reply(tool_calls=[_delegate("one", "Fast part"), _delegate("two", "Slow part")]),
            reply("Both parts are in."),
        ],
        "one": [reply("fast result")],
        "two": [reply("slow result")],
    }
    model_server.enqueue(dynamic(lambda body: script[_by_handle(body)].pop(0)))
    root, _ = task_create(employee=team["lead"], title="", input="Split this", urgent=True)
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN
    fast = Task.objects.get(parent=root, employee=team["one"])
    slow = Task.objects.get(parent=root, employee=team["two"])
    assert run_task(fast.pk) == TaskStatus.DONE
    root.refresh_from_db()
    assert root.status == TaskStatus.QUEUED  # woken by the fast child
    calls_before = model_server.calls
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN  # records it, waits for the slow one
    assert model_server.calls == calls_before
    assert run_task(slow.pk) == TaskStatus.DONE
    assert run_task(root.pk) == TaskStatus.DONE
    messages = model_server.requests[-1]["body"]["messages"]
    results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
    assert [r["result"] for r in results] == ["fast result", "slow result"]
    assert all(r["status"] == "done" for r in results)


def test_a_failed_child_is_reported_to_the_parent_which_reacts(
    model_server, team, system_actor, django_capture_on_commit_callbacks
):
    model_server.enqueue(
        dynamic(
            lambda body: (
                reply(tool_calls=[_delegate("one")])
                if not any(m["role"] == "tool" for m in body["messages"])
                else reply("One could not do it; I will handle it another way.")
            )
        )
    )
    root, _ = task_create(employee=team["lead"], title="", input="Delegate", urgent=True)
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN
    child = Task.objects.get(parent=root)
    with django_capture_on_commit_callbacks(execute=True):
        task_cancel(task=child, actor=system_actor, reason="No longer possible")
    root.refresh_from_db()
    assert root.status == TaskStatus.QUEUED
    assert run_task(root.pk) == TaskStatus.DONE
    [result] = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert result["status"] == "error"
    assert "was cancelled: No longer possible" in result["result"]["error"]


def test_a_cycle_is_refused(model_server, team):
    script = {
        "lead": [reply(tool_calls=[_delegate("one")]), reply("ok")],
        "one": [reply(tool_calls=[_delegate("lead", "Back to you")]), reply("Could not.")],
    }
    model_server.enqueue(dynamic(lambda body: script[_by_handle(body)].pop(0)))
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    _run_queued()
    child = Task.objects.get(parent=root)
    [refused] = [s.payload for s in Step.objects.filter(task=child, kind=StepKind.TOOL_CALL)]
    assert refused["status"] == "refused"
    assert "cycle (@lead → @one → @lead)" in refused["result"]["error"]
    assert Task.objects.count() == 2
    root.refresh_from_db()
    assert root.status == TaskStatus.DONE


def test_delegation_outside_the_collaboration_lines_is_refused_clearly(model_server, team):
    other = TeamFactory(name="Finance", accepts_requests_from_other_teams=True)
    EmployeeFactory(handle="fin-lead", team=other, is_manager=True)
    EmployeeFactory(handle="fin-clerk", team=other)
    model_server.enqueue(
        reply(tool_calls=[_delegate("fin-clerk")]), reply(tool_calls=[_delegate("fin-lead")])
    )
    root, _ = task_create(employee=team["one"], title="", input="Ask finance", urgent=True)
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN
    [refused] = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert refused["status"] == "refused"
    assert refused["result"]["error"] == (
        "Refused: @fin-clerk is in the team 'Finance', outside your collaboration lines. "
        "Requests into that team go to its manager employee @fin-lead, which routes them: "
        "delegate to them instead."
    )
    # Through the manager employee it works.
    assert Task.objects.get(parent=root).employee.handle == "fin-lead"


def test_another_teams_manager_employee_takes_requests_only_if_its_team_accepts_them(
    model_server, team
):
    finance = TeamFactory(name="Finance")  # does not accept requests from other teams
    EmployeeFactory(handle="fin-lead", team=finance, is_manager=True)
    EmployeeFactory(handle="fin-clerk", team=finance)
    model_server.enqueue(
        reply(tool_calls=[_delegate("fin-lead")]),
        reply(tool_calls=[_delegate("fin-clerk")]),
        reply("Finance cannot be asked."),
    )
    root, _ = task_create(employee=team["one"], title="", input="Ask finance", urgent=True)
    assert run_task(root.pk) == TaskStatus.DONE
    refusals = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert [r["status"] for r in refusals] == ["refused", "refused"]
    assert refusals[0]["result"]["error"] == (
        "Refused: @fin-lead is a manager employee of the team 'Finance', and 'Finance' does "
        "not accept requests from other teams. A manager of 'Finance' can allow them (the "
        "team's 'Accepts requests from other teams' in the back office); until then, ask a "
        "person instead (escalate_to_human)."
    )
    assert (
        "@fin-clerk is in the team 'Finance', outside your collaboration lines, and "
        in (refusals[1]["result"]["error"])
    )
    assert "delegate to them instead" not in refusals[1]["result"]["error"]
    assert not Task.objects.filter(parent=root).exists()
    # Nor is the manager employee offered in the prompt.
    system = model_server.requests[0]["body"]["messages"][0]["content"]
    assert "@fin-lead" not in system and "@two" in system

    finance.accepts_requests_from_other_teams = True
    finance.save()
    model_server.reset()
    model_server.enqueue(reply(tool_calls=[_delegate("fin-lead")]))
    again, _ = task_create(employee=team["one"], title="", input="Ask finance", urgent=True)
    assert run_task(again.pk) == TaskStatus.WAITING_CHILDREN
    assert Task.objects.get(parent=again).employee.handle == "fin-lead"
    system = model_server.requests[0]["body"]["messages"][0]["content"]
    assert "@fin-lead" in system and "manager employee of Finance" in system


def test_depth_and_fan_out_limits(model_server, team, settings):
    settings.DELEGATION_MAX_CHILDREN = 1
    model_server.enqueue(reply(tool_calls=[_delegate("one"), _delegate("two")]))
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN
    [refused] = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert refused["result"]["error"] == "Refused: a task may delegate at most 1 requests."
    settings.DELEGATION_MAX_DEPTH = 1
    model_server.reset()
    model_server.enqueue(reply(tool_calls=[_delegate("two")]), reply("ok"))
    child = Task.objects.get(parent=root)
    run_task(child.pk)
    [refused] = [s.payload for s in Step.objects.filter(task=child, kind=StepKind.TOOL_CALL)]
    assert "already 1 delegation(s) deep and the limit is 1" in refused["result"]["error"]


def test_a_child_cannot_use_a_tool_its_employee_is_not_granted(model_server, team):
    ToolGrantFactory(
        employee=team["lead"],
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.AUTO,
    )
    email = ("send_email", {"to": ["a@example.com"], "subject": "s", "body": "b"})
    script = {
        "lead": [reply(tool_calls=[_delegate("one", "Send the email for me")]), reply("ok")],
        "one": [reply(tool_calls=[email]), reply("I cannot email.")],
    }
    model_server.enqueue(dynamic(lambda body: script[_by_handle(body)].pop(0)))
    root, _ = task_create(employee=team["lead"], title="", input="Email a", urgent=True)
    _run_queued()
    child = Task.objects.get(parent=root)
    [step] = [s.payload for s in Step.objects.filter(task=child, kind=StepKind.TOOL_CALL)]
    assert step["status"] == "refused" and "not available to you" in step["result"]["error"]
    assert not child.emails.exists() and not root.emails.exists()


def test_a_childs_context_shows_its_parent_and_its_siblings_status(model_server, team):
    script = {
        "lead": [reply(tool_calls=[_delegate("one"), _delegate("two")])],
        "one": [reply("done")],
    }
    model_server.enqueue(dynamic(lambda body: script[_by_handle(body)].pop(0)))
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    run_task(root.pk)
    lead_system = model_server.requests[0]["body"]["messages"][0]["content"]
    assert (
        "You may delegate to:" in lead_system
        and "@one (Support specialist; same team)" in lead_system
    )
    one = Task.objects.get(parent=root, employee=team["one"])
    two = Task.objects.get(parent=root, employee=team["two"])
    run_task(one.pk)
    system = model_server.requests[-1]["body"]["messages"][0]["content"]
    assert f"delegated to you by @lead (Support specialist) from its task #{root.pk}" in system
    assert f"#{two.pk} @two (Support specialist): Queued" in system
    # The child's instructions are marked as untrusted data like any task input.
    user = model_server.requests[-1]["body"]["messages"][1]["content"]
    assert user.startswith(f"Task #{one.pk}\n<<<UNTRUSTED_TASK_INPUT")


def test_childrens_cost_counts_against_the_root_budget(model_server, team, settings):
    # Output at $0.001 a token, prompts free: each call reserves its 1500 output tokens.
    settings.MODEL_PRICES = {"gpt-4o-mini": (Decimal("0"), Decimal("1000"))}
    team["lead"].max_cost_per_task = Decimal("2.50")
    team["lead"].max_tokens_per_turn = 1500
    team["lead"].save()
    for handle in ("one", "two"):
        Employee.objects.filter(handle=handle).update(
            max_cost_per_task=Decimal("100"), max_tokens_per_turn=1500
        )
    script = {
        "lead": [
            reply(
                tool_calls=[_delegate("one"), _delegate("two")],
                prompt_tokens=100,
                completion_tokens=200,
            )
        ],
        "one": [reply("one done", prompt_tokens=900, completion_tokens=1000)],
        "two": [reply("two done", prompt_tokens=900, completion_tokens=1000)],
    }
    model_server.enqueue(dynamic(lambda body: script[_by_handle(body)].pop(0)))
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN  # spent $0.20 of $2.50
    one = Task.objects.get(parent=root, employee=team["one"])
    two = Task.objects.get(parent=root, employee=team["two"])
    assert run_task(one.pk) == TaskStatus.DONE  # reserves up to $1.50, spends $1.00
    root.refresh_from_db()
    assert root.descendants_cost == Decimal("1.0") and root.cost == Decimal("0.2")
    # $1.20 spent: the next child's worst case of $1.50 does not fit under the root's $2.50.
    assert run_task(two.pk) == TaskStatus.BUDGET_EXHAUSTED
    two.refresh_from_db()
    assert "The request this task is part of" in two.status_reason
    raise_request = ApprovalRequest.objects.get(task=two)
    assert raise_request.arguments["scope"] == "request"
    # The root's team decides on its request's ceiling, in its own inbox.
    assert raise_request.employee == team["lead"]
    assert model_server.calls == 2
    approval_decide(approval=raise_request, user=UserFactory(), decision=ApprovalStatus.APPROVED)
    root.refresh_from_db()
    assert Decimal(root.budget_overrides["task_cost"]) >= Decimal("2.70")
    assert run_task(two.pk) == TaskStatus.DONE
    root.refresh_from_db()
    assert root.descendants_cost == Decimal("2.0")


def test_a_wait_past_its_deadline_escalates_and_a_person_decides(model_server, team):
    model_server.enqueue(
        reply(tool_calls=[_delegate("one", deadline_hours=1)]), reply("Went on without it.")
    )
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN
    child = Task.objects.get(parent=root)
    assert timedelta(minutes=59) < child.expected_by - timezone.now() <= timedelta(hours=1)
    Task.objects.filter(pk=child.pk).update(expected_by=timezone.now() - timedelta(minutes=1))
    call_command("run_due")
    root.refresh_from_db()
    assert root.status == TaskStatus.QUEUED
    assert run_task(root.pk) == TaskStatus.WAITING_ESCALATION
    escalation = Escalation.objects.get(task=root)
    assert escalation.options == ["Keep waiting", "Continue without it"]
    escalation_answer(
        escalation=escalation, user=UserFactory(), chosen_option="Continue without it"
    )
    assert run_task(root.pk) == TaskStatus.DONE
    [step] = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert step["status"] == "error" and "Not waited for" in step["result"]["error"]
    child.refresh_from_db()
    assert child.expected_by is None  # no longer awaited: run_due leaves it alone


def test_cancelling_the_parent_cancels_what_it_delegated(model_server, team, system_actor):
    model_server.enqueue(reply(tool_calls=[_delegate("one"), _delegate("two")]))
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    run_task(root.pk)
    task_cancel(task=root, actor=system_actor, reason="Changed plans")
    assert set(Task.objects.values_list("status", flat=True)) == {TaskStatus.CANCELLED}


def test_shadow_employee_only_proposes_a_delegation(model_server, team):
    Employee.objects.filter(pk=team["lead"].pk).update(status=EmployeeStatus.SHADOW)
    model_server.enqueue(reply(tool_calls=[_delegate("one")]), reply("Proposed."))
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    assert run_task(root.pk) == TaskStatus.DONE
    assert Task.objects.count() == 1


def test_a_task_without_links_runs_no_delegation_query(model_server, clerk):
    """The loop's per-step statements stay as they were for tasks that delegate nothing."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = model_server.base_url + "/ping"
    model_server.enqueue(
        reply(tool_calls=[("http_request", {"method": "GET", "url": url})]), reply("ok")
    )
    task, _ = task_create(employee=clerk, title="", input="Ping", urgent=True)
    with CaptureQueriesContext(connection) as queries:
        assert run_task(task.pk) == TaskStatus.DONE
    sql = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in sql if '"parent_id" =' in s or '"root_id" =' in s]
    # The root budget rides in the reservation statement; nothing settles on a root.
    assert not [s for s in sql if "settle_root" in s or 'SET "descendants_cost"' in s]
    print(f"plain task, one tool call and a final answer: {len(sql)} statements")


def test_a_delegation_that_needs_approval_creates_the_child_only_once_approved(
    model_server, team, client
):
    from employees.models import ToolGrant

    ToolGrant.objects.filter(employee=team["lead"], tool_name="delegate").update(
        policy=ToolPolicy.NEEDS_APPROVAL
    )
    model_server.enqueue(reply(tool_calls=[_delegate("one", "Buy the licence")]))
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    assert run_task(root.pk) == TaskStatus.WAITING_APPROVAL
    assert Task.objects.count() == 1
    approval = ApprovalRequest.objects.get()
    approver = UserFactory(is_superuser=True)
    client.force_login(approver)
    inbox = client.get("/inbox/").text
    assert "Delegate to @one" in inbox and "Buy the licence" in inbox
    approval_decide(approval=approval, user=approver, decision=ApprovalStatus.APPROVED)
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN
    assert Task.objects.get(parent=root).employee == team["one"]


def test_keep_waiting_gives_the_child_a_new_deadline(model_server, team):
    # In order: the lead delegates, the child answers, the lead finishes.
    model_server.enqueue(
        reply(tool_calls=[_delegate("one")]), reply("child result"), reply("Got it.")
    )
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    run_task(root.pk)
    child = Task.objects.get(parent=root)
    Task.objects.filter(pk=child.pk).update(expected_by=timezone.now() - timedelta(minutes=1))
    call_command("run_due")
    assert run_task(root.pk) == TaskStatus.WAITING_ESCALATION
    escalation_answer(
        escalation=Escalation.objects.get(task=root),
        user=UserFactory(),
        chosen_option="Keep waiting",
    )
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN
    child.refresh_from_db()
    assert child.expected_by > timezone.now() + timedelta(hours=23)
    assert run_task(child.pk) == TaskStatus.DONE
    assert run_task(root.pk) == TaskStatus.DONE
    [step] = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert step["result"]["result"] == "child result"


def test_a_child_that_reported_while_the_parent_parked_wakes_it(model_server, team):
    """The race: the child finished after the parent looked and before it parked."""
    model_server.enqueue(reply(tool_calls=[_delegate("one")]))
    root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
    run_task(root.pk)
    child = Task.objects.get(parent=root)
    Task.objects.filter(pk=child.pk).update(status=TaskStatus.DONE, result="r")
    assert parent_wake_if_ready(parent=root, awaiting=[child.pk]) is True
    root.refresh_from_db()
    assert root.status == TaskStatus.QUEUED


def test_a_child_stopped_by_wrong_model_settings_wakes_its_parent_saying_so(model_server, team):
    one = team["one"]
    one.model_name = "gpt-4o-mnii"
    one.save()

    def script(body: dict):
        if body["model"] == "gpt-4o-mnii":
            return error(404, "The model `gpt-4o-mnii` does not exist.", code="model_not_found")
        results = [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]
        if not results:
            return reply(tool_calls=[_delegate("one")])
        return reply("One cannot work until its settings are fixed; told a person.")

    model_server.enqueue(dynamic(script))
    root, _ = task_create(employee=team["lead"], title="", input="Delegate", urgent=True)
    assert run_task(root.pk) == TaskStatus.WAITING_CHILDREN
    child = Task.objects.get(parent=root)
    assert run_task(child.pk) == TaskStatus.MODEL_MISCONFIGURED
    root.refresh_from_db()
    assert root.status == TaskStatus.QUEUED  # woken at once, not left to its deadline
    assert run_task(root.pk) == TaskStatus.DONE
    [result] = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert result["status"] == "error"
    assert result["result"]["status"] == TaskStatus.MODEL_MISCONFIGURED
    error_text = result["result"]["error"]
    assert (
        f"Delegated task #{child.pk} for @one stopped: its model settings are wrong" in error_text
    )
    assert "Configuration problem: The model `gpt-4o-mnii` does not exist." in error_text
    assert Task.objects.get(pk=child.pk).status == TaskStatus.MODEL_MISCONFIGURED
