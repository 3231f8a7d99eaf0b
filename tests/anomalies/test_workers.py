"""Each anomaly rule with real django-q2 workers and the scripted model endpoint: the condition
comes from real work, the rules' job (run by a worker, or by run_due) pauses the employee, its
running task parks at its next step with nothing half done, the managers get a mail, the audit
trail has it, and a manager resumes it without the old figures pausing it again."""

from __future__ import annotations

import io
import itertools
import json
import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from aiworkforce.audit import Actor
from anomalies.models import AnomalyPause, Rule
from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.services import approval_decide
from employees.models import Employee, EmployeeStatus, ToolPolicy
from tasks.models import OutboxEmail, Step, StepKind, Task, TaskSource, TaskStatus
from tasks.webhooks import webhook_endpoint_create
from tests.anomalies.workers import (
    assert_paused_by,
    evaluate,
    hire,
    override,
    resume,
    task_status,
    wait_for,
)
from tests.factories import ToolGrantFactory, UserFactory, assigned_task
from tests.fakes.openai_server import dynamic, reply

pytestmark = pytest.mark.django_db(transaction=True)

PING = ("http_request", {"allowed_hosts": ["127.0.0.1"], "allowed_methods": ["GET"]})


def _grant(employee, tool: str, scope: dict | None = None, policy=ToolPolicy.AUTO) -> None:
    ToolGrantFactory(employee=employee, tool_name=tool, scope=scope or {}, policy=policy)


def _pings(model_server) -> int:
    """Requests the http_request tool made (the fake model endpoint answers them with a 404)."""
    return sum(1 for r in list(model_server.requests) if r["path"] == "/v1/ping")


def _tool_steps(task, status: str | None = None):
    steps = Step.objects.filter(task=task, kind=StepKind.TOOL_CALL)
    return steps.filter(payload__status=status) if status else steps


# --- tool-call surge: the running task makes no call after the pause ---------------------------


def test_tool_surge_pauses_mid_task_and_the_task_makes_no_call_after_the_pause(
    workers, model_server, smtp, manager, client
):
    employee = hire(manager, "pinger")
    _grant(employee, *PING)
    override(employee, Rule.TOOL_SURGE, threshold=3)
    url = model_server.base_url + "/ping"
    turns = itertools.count(1)
    in_flight, released = threading.Event(), threading.Event()

    def keep_pinging(body):
        turn = next(turns)
        if turn == 5:  # the pause lands while this model call is in flight
            in_flight.set()
            released.wait(10)
        return reply(tool_calls=[("http_request", {"method": "GET", "url": f"{url}?n={turn}"})])

    model_server.enqueue(dynamic(keep_pinging))
    task = assigned_task(employee, "Check the service until it answers")
    wait_for(in_flight.is_set, "the fifth model call", workers)
    assert _pings(model_server) == 4

    assert evaluate(workers) == "paused: 1"
    assert_paused_by(
        employee,
        Rule.TOOL_SURGE,
        {"tool": "http_request", "calls": 4, "threshold": 3},
        "Paused by the tool-call-surge rule: 4 calls of http_request in the last hour "
        "(limit 3 an hour).",
        smtp,
    )
    released.set()  # the model answers with a fifth call: the task must not make it
    wait_for(lambda: task_status(task) == TaskStatus.PAUSED, "the task to park", workers)

    # Nothing half done: every call started was finished and recorded; none began after.
    assert _pings(model_server) == 4 and model_server.calls == 5
    assert (
        _tool_steps(task, "started").count()
        == _tool_steps(task).exclude(payload__status="started").count()
        == 4
    )
    paused_at = AnomalyPause.objects.get().paused_at
    assert (
        not _tool_steps(task).filter(created_at__gt=paused_at, payload__status="started").exists()
    )
    # The fifth call is recorded as the model's answer, waiting for the resume.
    last = Step.objects.filter(task=task, kind=StepKind.LLM_CALL).order_by("seq").last()
    assert "n=5" in json.dumps(last.payload)

    # The dashboard shows it first, marked.
    client.force_login(manager)
    page = client.get(reverse("dashboard:home")).content.decode()
    assert "Paused by rule: tool-call surge" in page
    assert page.index("Paused by rule") < page.index('data-need="approvals"')

    # The manager resumes it: the waiting call goes out once, the model stops, and the four
    # calls before the resume do not pause it again.
    model_server.reset()
    model_server.enqueue(reply("The service answers."))
    resume(client, manager, employee)
    wait_for(lambda: task_status(task) == TaskStatus.DONE, "the task to finish", workers)
    assert _pings(model_server) == 1
    fifth = _tool_steps(task, "started").order_by("seq").last()
    assert fifth.payload["arguments"]["url"].endswith("?n=5") and fifth.created_at > paused_at
    assert _tool_steps(task, "started").count() == 5
    assert evaluate(workers) == "paused: 0"
    employee.refresh_from_db()
    assert employee.status == EmployeeStatus.ACTIVE


# --- spend spike: real model usage over a seeded week ------------------------------------------


def _usual_week(employee, hours: int = 20, cost: str = "0.001") -> None:
    """A week of usual work: one finished task an hour (the 7-day hourly p95 is `cost`)."""
    now = timezone.now()
    for n in range(hours):
        task = Task.objects.create(
            employee=employee,
            title=f"Usual {n}",
            input="Usual work.",
            status=TaskStatus.DONE,
            cost=Decimal(cost),
        )
        Task.objects.filter(pk=task.pk).update(finished_at=now - timedelta(hours=2 + 7 * n))


def test_spend_spike_pauses_and_the_running_task_calls_the_model_no_more(
    workers, model_server, smtp, manager, client
):
    employee = hire(
        manager, "spender", max_cost_per_task=Decimal("10"), max_cost_per_day=Decimal("10")
    )
    _grant(employee, *PING)
    override(employee, Rule.SPEND_SPIKE, multiplier="5", floor="0.01")
    _usual_week(employee)
    url = model_server.base_url + "/ping"
    in_flight, released = threading.Event(), threading.Event()

    def expensive(body):
        if model_server.calls == 2:  # the second call is in flight when the pause lands
            in_flight.set()
            released.wait(10)
            return reply(tool_calls=[("http_request", {"method": "GET", "url": url + "?n=2"})])
        if model_server.calls > 2:
            return reply("Done, at last.")
        # 100,000 + 2,000 tokens of gpt-4o-mini: $0.0162, 16x the usual hour's $0.001.
        return reply(
            tool_calls=[("http_request", {"method": "GET", "url": url + "?n=1"})],
            prompt_tokens=100_000,
            completion_tokens=2_000,
        )

    model_server.enqueue(dynamic(expensive))
    task = assigned_task(employee, "Read the whole archive")
    wait_for(in_flight.is_set, "the second model call", workers)

    assert evaluate(workers) == "paused: 1"
    assert_paused_by(
        employee,
        Rule.SPEND_SPIKE,
        {"spent": "0.016200", "p95": "0.001000", "multiplier": "5.00", "floor": "0.01"},
        "Paused by the spend-spike rule: $0.02 in the last hour, 16.2\N{MULTIPLICATION SIGN} "
        "its usual hourly p95 of $0.0010 (limit 5\N{MULTIPLICATION SIGN}, floor $0.01).",
        smtp,
    )
    released.set()
    wait_for(lambda: task_status(task) == TaskStatus.PAUSED, "the task to park", workers)
    assert model_server.calls == 2 and _pings(model_server) == 1  # no third call, no second ping

    model_server.reset()
    model_server.enqueue(reply("Done, at last."))
    resume(client, manager, employee)
    wait_for(lambda: task_status(task) == TaskStatus.DONE, "the task to finish", workers)
    assert model_server.calls == 1 and _pings(model_server) == 1
    assert evaluate(workers) == "paused: 0"  # the $0.0162 before the resume no longer counts


# --- error streak: tasks that escalate and fail ------------------------------------------------


def test_error_streak_of_real_escalations_and_failures_pauses_and_new_work_waits(
    workers, model_server, smtp, manager, client
):
    employee = hire(manager, "refunder")
    _grant(employee, "escalate_to_human")
    override(employee, Rule.ERROR_STREAK, threshold=3)
    model_server.enqueue(
        reply(tool_calls=[("escalate_to_human", {"summary": "Refund?", "options": ["Yes", "No"]})])
    )
    first = assigned_task(employee, "Refund order 17")
    wait_for(lambda: task_status(first) == TaskStatus.WAITING_ESCALATION, "an escalation", workers)
    # Then its brief grows past what its model's window holds: its tasks fail before a call.
    Employee.objects.filter(pk=employee.pk).update(
        context_window=1024, constraints="Quote the whole refund policy. " * 200
    )
    failing = [assigned_task(employee, f"Refund order {n}") for n in (18, 19)]
    wait_for(
        lambda: all(task_status(t) == TaskStatus.FAILED for t in failing), "two failures", workers
    )

    assert evaluate(workers) == "paused: 1"
    assert_paused_by(
        employee,
        Rule.ERROR_STREAK,
        {"threshold": 3, "failed": 2, "escalated": 1},
        "Paused by the error-streak rule: its last 3 tasks ended badly in a row "
        "(2 failed, 1 escalated; limit 3).",
        smtp,
    )
    # Work that arrives meanwhile waits, and runs once the manager has fixed it and resumes.
    waiting = assigned_task(employee, "Refund order 20")
    assert task_status(waiting) == TaskStatus.PAUSED
    Employee.objects.filter(pk=employee.pk).update(context_window=None, constraints="")
    in_flight, released = threading.Event(), threading.Event()

    def refund(body):
        in_flight.set()
        released.wait(10)
        return reply("Refunded.")

    model_server.enqueue(dynamic(refund))
    resume(client, manager, employee)
    wait_for(in_flight.is_set, "the waiting task's model call", workers)
    # Its last three tasks still ended badly, but before the resume: no second pause.
    assert evaluate(workers) == "paused: 0"
    released.set()
    wait_for(lambda: task_status(waiting) == TaskStatus.DONE, "the waiting task", workers)
    assert model_server.calls == 2


# --- rejection streak: people reject its proposals ---------------------------------------------


def _emails_then_accepts(body):
    """Proposes one email per task; after the decision, accepts it in words."""
    if any(m["role"] == "tool" for m in body["messages"]):
        return reply("Understood.")
    asked = json.dumps([m for m in body["messages"] if m["role"] == "user"])
    number = re.search(r"Reply to customer (\d+)", asked).group(1)
    return reply(
        tool_calls=[
            (
                "send_email",
                {"to": [f"customer{number}@example.com"], "subject": "Your order", "body": "Hi."},
            )
        ]
    )


def test_rejection_streak_pauses_and_an_approval_made_meanwhile_waits_for_the_resume(
    workers, model_server, smtp, manager, client
):
    employee = hire(manager, "replier")
    _grant(employee, "send_email", {"allowed_domains": ["example.com"]}, ToolPolicy.NEEDS_APPROVAL)
    override(employee, Rule.REJECTION_STREAK, threshold=3, sample=5)
    model_server.enqueue(dynamic(_emails_then_accepts))
    tasks = [assigned_task(employee, f"Reply to customer {n} about the order") for n in range(4)]
    wait_for(
        lambda: ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING).count() == 4,
        "four proposals",
        workers,
    )
    reviewer = UserFactory(username="reviewer")
    for task in tasks[:3]:
        approval_decide(
            approval=ApprovalRequest.objects.get(task=task),
            user=reviewer,
            decision="rejected",
            comment="Not this customer.",
        )
    wait_for(
        lambda: all(task_status(t) == TaskStatus.DONE for t in tasks[:3]), "three replies", workers
    )

    assert evaluate(workers) == "paused: 1"
    assert_paused_by(
        employee,
        Rule.REJECTION_STREAK,
        {"threshold": 3, "sample": 5, "rejected": 3, "decided": 3},
        "Paused by the rejection-streak rule: people rejected 3 of its last 3 proposals "
        "(limit 3 of 5).",
        smtp,
    )
    # The fourth proposal is approved while it is paused: the email waits for the resume.
    approval_decide(
        approval=ApprovalRequest.objects.get(task=tasks[3]), user=reviewer, decision="approved"
    )
    assert task_status(tasks[3]) == TaskStatus.PAUSED
    assert not OutboxEmail.objects.exists()

    resume(client, manager, employee)
    wait_for(lambda: task_status(tasks[3]) == TaskStatus.DONE, "the approved email", workers)
    assert OutboxEmail.objects.get().to == ["customer3@example.com"]
    wait_for(
        lambda: any(m.recipients == ["customer3@example.com"] for m in smtp.received),
        "its delivery",
        workers,
    )
    assert evaluate(workers) == "paused: 0"  # the three rejections came before the resume


# --- wake loop: a webhook that keeps waking it -------------------------------------------------


def _deliver(client, endpoint, secret: str, body: bytes, msg_id: str):
    at = timezone.now()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }
    url = reverse("webhooks:webhook_receive", kwargs={"key": endpoint.key})
    response = client.post(url, body, content_type="application/json", headers=headers)
    assert response.status_code == 202, response.content
    return Task.objects.get(pk=response.json()["task"])


def test_wake_loop_from_a_webhook_pauses_and_a_resume_starts_a_new_window(
    workers, model_server, smtp, manager, client, mailoutbox
):
    employee = hire(manager, "hooked")
    override(employee, Rule.WAKE_LOOP, threshold=3, window_minutes=5)
    endpoint, secret = webhook_endpoint_create(
        employee=employee, name="Orders", actor=Actor.system("tests"), urgent=True
    )
    event = json.dumps({"type": "order.updated", "order": 17}).encode()
    woken = [_deliver(client, endpoint, secret, event, f"msg_{n}") for n in range(4)]
    assert {t.source for t in woken} == {TaskSource.WEBHOOK}
    wait_for(lambda: all(task_status(t) == TaskStatus.DONE for t in woken), "four runs", workers)

    assert evaluate(workers) == "paused: 1"
    assert_paused_by(
        employee,
        Rule.WAKE_LOOP,
        {"created": 4, "text": event.decode(), "threshold": 3, "window_minutes": 5},
        "Paused by the wake-loop rule: the same task text arrived 4 times in 5 minutes "
        f"(limit 3): “{event.decode()}”.",
        smtp,
    )
    calls = model_server.calls
    held = _deliver(client, endpoint, secret, event, "msg_4")  # the loop goes on: it waits
    assert task_status(held) == TaskStatus.PAUSED and model_server.calls == calls

    resume(client, manager, employee)
    wait_for(lambda: task_status(held) == TaskStatus.DONE, "the held task", workers)
    assert evaluate(workers) == "paused: 0"  # five deliveries, all before the resume

    # After the resume, the same loop pauses it again, here through run_due (cron's way).
    again = [_deliver(client, endpoint, secret, event, f"msg_{n}") for n in range(5, 9)]
    wait_for(lambda: all(task_status(t) == TaskStatus.DONE for t in again), "four more", workers)
    out = io.StringIO()
    call_command("run_due", stdout=out)
    assert "1 employees paused by anomaly rules" in out.getvalue()
    employee.refresh_from_db()
    assert employee.status == EmployeeStatus.PAUSED
    assert employee.status_reason.startswith(
        "Paused by the wake-loop rule: the same task text arrived 4 times in 5 minutes"
    )
    assert AnomalyPause.objects.filter(employee=employee).count() == 2
    [mail] = [m for m in mailoutbox if "was paused by the" in m.subject]
    assert mail.to == ["boss@example.com"] and "wake-loop" in mail.subject
