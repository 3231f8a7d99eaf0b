"""Delegation with real django-q2 worker clusters: the parent parks, children run, the parent joins."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.services import approval_decide
from employees.demo import ONBOARDING_REQUEST, load_demo_workforce
from employees.models import Employee, ToolPolicy
from tasks.models import Step, StepKind, Task, TaskStatus
from tasks.services import task_create
from tests.aiworkforce.helpers import clean_env, manage
from tests.factories import EmployeeFactory, TeamFactory, ToolGrantFactory, UserFactory
from tests.fakes.cluster import Cluster
from tests.fakes.openai_server import delay, dynamic, error, reply
from tests.tasks.test_workers import _test_database_url, _wait

pytestmark = pytest.mark.django_db(transaction=True)


def _env(model_server=None, **extra: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": _test_database_url(),
        "LLM_MAX_RETRIES": "0",
        "Q_WORKERS": "3",
        "Q_TIMEOUT": "20",
        "Q_RETRY": "30",
        "OPENAI_API_KEY": "",
    }
    if model_server is not None:
        env.update(OPENAI_API_KEY="sk-test-not-a-real-key", OPENAI_BASE_URL=model_server.base_url)
    env.update(extra)
    return clean_env(**env)


def _delegate(to: str, instructions: str = "Do your part.") -> tuple[str, dict]:
    return ("delegate", {"to": to, "instructions": instructions, "expected_result": "Done."})


def _handle(body: dict) -> str:
    return body["messages"][0]["content"].split("(@", 1)[1].split(")", 1)[0]


def _tool_results(body: dict) -> list[dict]:
    return [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]


def _status(task: Task) -> str:
    return Task.objects.get(pk=task.pk).status


@pytest.fixture
def team():
    ops = TeamFactory(name="Ops")
    lead = EmployeeFactory(handle="lead", name="Lead", team=ops, is_manager=True)
    one = EmployeeFactory(handle="one", name="One", team=ops, reports_to=lead)
    two = EmployeeFactory(handle="two", name="Two", team=ops, reports_to=lead)
    three = EmployeeFactory(handle="three", name="Three", team=ops, reports_to=lead)
    for employee in (lead, one, two, three):
        ToolGrantFactory(employee=employee, tool_name="delegate", scope={}, policy=ToolPolicy.AUTO)
    return {"lead": lead, "one": one, "two": two, "three": three}


def test_the_onboarding_request_runs_end_to_end_offline_with_one_approval():
    load_demo_workforce()
    cluster = Cluster(_env())
    try:
        result = manage(
            "assign",
            "olivia-onboarding",
            ONBOARDING_REQUEST,
            "--wait",
            "--json",
            env={"DATABASE_URL": _test_database_url(), "OPENAI_API_KEY": ""},
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        outcome = json.loads(result.stdout)
        # Everything that could run has run; what is left waits for one person's decision.
        assert outcome["status"] == TaskStatus.WAITING_CHILDREN
        linked = {item["employee"]: item for item in outcome["linked"]}
        assert {h: item["status"] for h, item in linked.items()} == {
            "hana-hr": TaskStatus.DONE,
            "ivan-it": TaskStatus.WAITING_APPROVAL,
            "fay-facilities": TaskStatus.DONE,
        }
        assert linked["ivan-it"]["reason"] == "Waiting for approval of send_email."
        [approval] = ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING)
        root = Task.objects.get(pk=outcome["task"])
        approval_decide(approval=approval, user=UserFactory(), decision=ApprovalStatus.APPROVED)
        _wait(lambda: _status(root) == TaskStatus.DONE, "the coordinator to finish", 60, cluster)
    finally:
        cluster.stop()
    root.refresh_from_db()
    assert root.result.startswith("[offline mode]")
    assert "What the delegated requests reported:" in root.result
    for child in Task.objects.filter(parent=root).select_related("employee"):
        assert child.status == TaskStatus.DONE
        assert f"@{child.employee.handle} (task #{child.pk}), done" in root.result
    assert ApprovalRequest.objects.count() == 1
    assert sorted(root.children.values_list("emails__to", flat=True)) == [
        ["frontdesk@example.com"],
        ["payroll@example.com"],
        ["procurement@example.com"],
    ]


def test_join_waits_for_the_slow_child_without_holding_a_worker(model_server, team):
    def script(body: dict):
        who, results = _handle(body), _tool_results(body)
        if who == "lead":
            if not results:
                return reply(tool_calls=[_delegate("one", "Quick"), _delegate("two", "Slow")])
            return reply("Assembled: " + " + ".join(r["result"] for r in results))
        if who == "two":
            return delay(4, reply("slow part"))
        return reply("quick part")

    model_server.enqueue(dynamic(script))
    # Two worker processes: the parked parent holds neither while the slow child runs.
    cluster = Cluster(_env(model_server, Q_WORKERS="2"))
    try:
        root, _ = task_create(employee=team["lead"], title="", input="Split", urgent=True)
        _wait(lambda: _status(root) == TaskStatus.DONE, "the parent to finish", 60, cluster)
    finally:
        cluster.stop()
    root.refresh_from_db()
    assert root.result == "Assembled: quick part + slow part"
    slow = Task.objects.get(parent=root, employee=team["two"])
    assert slow.finished_at <= root.finished_at
    lead_calls = [r for r in model_server.requests if _handle(r["body"]) == "lead"]
    assert len(lead_calls) == 2  # the fast child's report did not cause a model call
    assert root.runs.count() >= 2 and root.runs.filter(status="parked").exists()


def test_a_failed_child_is_reported_and_the_parent_reassigns_the_work(model_server, team):
    def script(body: dict):
        who, results = _handle(body), _tool_results(body)
        if who == "two":
            return error(500, "the model is down")
        if who == "lead":
            if not results:
                return reply(tool_calls=[_delegate("two")])
            if len(results) == 1 and "its model is unavailable" in results[0].get("error", ""):
                return reply(tool_calls=[_delegate("one", "Two failed; please do it")])
            return reply("Done by one after two failed.")
        return reply("one did it")

    model_server.enqueue(dynamic(script))
    cluster = Cluster(_env(model_server))
    try:
        root, _ = task_create(employee=team["lead"], title="", input="Do it", urgent=True)
        _wait(lambda: _status(root) == TaskStatus.DONE, "the parent to finish", 60, cluster)
    finally:
        cluster.stop()
    failed = Task.objects.get(parent=root, employee=team["two"])
    assert failed.status == TaskStatus.MODEL_UNAVAILABLE
    steps = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert [s["status"] for s in steps] == ["error", "ok"]
    assert Task.objects.get(parent=root, employee=team["one"]).status == TaskStatus.DONE
    assert Task.objects.get(pk=root.pk).result == "Done by one after two failed."


def test_a_cycle_is_refused_with_real_workers(model_server, team):
    def script(body: dict):
        who, results = _handle(body), _tool_results(body)
        if who == "lead":
            return reply(tool_calls=[_delegate("one")]) if not results else reply("ok")
        if not results:
            return reply(tool_calls=[_delegate("lead", "You do it")])
        return reply("Did it myself: " + results[0]["error"][:40])

    model_server.enqueue(dynamic(script))
    cluster = Cluster(_env(model_server))
    try:
        root, _ = task_create(employee=team["lead"], title="", input="Go", urgent=True)
        _wait(lambda: _status(root) == TaskStatus.DONE, "the parent to finish", 60, cluster)
    finally:
        cluster.stop()
    child = Task.objects.get(parent=root)
    [refusal] = [s.payload for s in Step.objects.filter(task=child, kind=StepKind.TOOL_CALL)]
    assert refusal["status"] == "refused"
    assert refusal["result"]["error"].startswith(
        "Refused: delegating to @lead would make a cycle (@lead → @one → @lead)"
    )
    assert Task.objects.count() == 2


def test_delegation_outside_the_lines_is_refused_and_the_manager_route_works(model_server, team):
    finance = TeamFactory(name="Finance", accepts_requests_from_other_teams=True)
    EmployeeFactory(handle="fin-lead", team=finance, is_manager=True)
    EmployeeFactory(handle="fin-clerk", team=finance)

    def script(body: dict):
        who, results = _handle(body), _tool_results(body)
        if who == "one":
            if not results:
                return reply(tool_calls=[_delegate("fin-clerk", "Pay the invoice")])
            if len(results) == 1:
                return reply(tool_calls=[_delegate("fin-lead", "Pay the invoice")])
            return reply("Finance paid it.")
        return reply("paid")

    model_server.enqueue(dynamic(script))
    cluster = Cluster(_env(model_server))
    try:
        root, _ = task_create(employee=team["one"], title="", input="Pay", urgent=True)
        _wait(lambda: _status(root) == TaskStatus.DONE, "the task to finish", 60, cluster)
    finally:
        cluster.stop()
    refused, routed = [s.payload for s in Step.objects.filter(task=root, kind=StepKind.TOOL_CALL)]
    assert refused["status"] == "refused"
    assert (
        "@fin-clerk is in the team 'Finance', outside your collaboration lines"
        in (refused["result"]["error"])
    )
    assert "its manager employee @fin-lead, which routes them" in refused["result"]["error"]
    assert routed["status"] == "ok" and routed["result"]["employee"] == "@fin-lead"
    assert [t.employee.handle for t in Task.objects.filter(parent=root)] == ["fin-lead"]


def test_the_root_budget_stops_a_fan_out(model_server, team):
    Employee.objects.filter(pk=team["lead"].pk).update(
        max_cost_per_task=Decimal("3.50"), max_tokens_per_turn=1500
    )
    Employee.objects.exclude(pk=team["lead"].pk).update(
        max_cost_per_task=Decimal("100"), max_tokens_per_turn=1500
    )

    def script(body: dict):
        if _handle(body) == "lead":
            return reply(
                tool_calls=[_delegate("one"), _delegate("two"), _delegate("three")],
                prompt_tokens=100,
                completion_tokens=200,
            )
        return delay(1, reply("done", prompt_tokens=900, completion_tokens=1000))

    model_server.enqueue(dynamic(script))
    # $0.001 an output token, prompts free: the lead spends $0.20; each child reserves $1.50
    # (its 1500 output tokens) and spends $1.00.
    env = _env(model_server, MODEL_PRICES='{"gpt-4o-mini": [0, 1000]}')
    cluster = Cluster(env)
    try:
        root, _ = task_create(employee=team["lead"], title="", input="Fan out", urgent=True)

        def settled() -> bool:
            children = list(Task.objects.filter(parent=root).values_list("status", flat=True))
            # The root, woken by each child that finished, has recorded them and waits again.
            return (
                len(children) == 3
                and all(s in (TaskStatus.DONE, TaskStatus.BUDGET_EXHAUSTED) for s in children)
                and _status(root) == TaskStatus.WAITING_CHILDREN
                and Step.objects.filter(task=root, kind=StepKind.TOOL_CALL).count() == 2
            )

        _wait(settled, "the children to finish or stop", 60, cluster)
    finally:
        cluster.stop()
    root.refresh_from_db()
    statuses = sorted(Task.objects.filter(parent=root).values_list("status", flat=True))
    # Whatever the order: two children fit under the root's $3.50, the third never does.
    assert statuses == [TaskStatus.BUDGET_EXHAUSTED, TaskStatus.DONE, TaskStatus.DONE]
    assert root.cost == Decimal("0.2") and root.descendants_cost == Decimal("2.0")
    assert root.cost + root.descendants_cost <= Decimal("3.50")
    stopped = Task.objects.get(parent=root, status=TaskStatus.BUDGET_EXHAUSTED)
    assert stopped.cost == 0
    assert f"The request this task is part of (#{root.pk} for @lead)" in stopped.status_reason
    assert ApprovalRequest.objects.get(task=stopped).arguments["scope"] == "request"
    assert root.status == TaskStatus.WAITING_CHILDREN  # still waits: a person may raise it
    assert f"#{stopped.pk} @" in root.status_reason
