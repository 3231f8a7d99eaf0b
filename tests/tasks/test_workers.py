"""With real django-q2 worker clusters: crash recovery, and budgets under parallel runs."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connections

from employees.models import ToolPolicy
from tasks.loop import run_task
from tasks.models import (
    DailySpend,
    OutboxEmail,
    OutboxStatus,
    Run,
    RunStatus,
    Step,
    StepKind,
    Task,
    TaskStatus,
)
from tasks.services import task_create
from tests.aiworkforce.helpers import clean_env
from tests.factories import EmployeeFactory, ToolGrantFactory
from tests.fakes.cluster import Cluster
from tests.fakes.cluster import database_url_for_workers as _test_database_url
from tests.fakes.openai_server import delay, dynamic, reply
from tests.fakes.smtp_server import FakeSMTPServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def smtp():
    with FakeSMTPServer() as server:
        yield server


@pytest.fixture
def worker_env(model_server, smtp):
    return clean_env(
        DATABASE_URL=_test_database_url(),
        OPENAI_API_KEY="sk-test-not-a-real-key",
        OPENAI_BASE_URL=model_server.base_url,
        LLM_MAX_RETRIES="0",
        TASK_LEASE_SECONDS="2",
        Q_WORKERS="2",
        Q_TIMEOUT="20",
        Q_RETRY="30",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp.port),
    )


def _wait(condition, what: str, timeout: float = 30, cluster: Cluster | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    output = "".join(cluster.output[-60:]) if cluster else ""
    tasks = list(Task.objects.values_list("pk", "status", "status_reason", "lease_owner"))
    raise AssertionError(f"timed out waiting for {what}; tasks: {tasks}\n{output}")


def test_worker_killed_mid_task_the_task_completes_and_the_email_goes_out_once(
    model_server, smtp, worker_env
):
    employee = EmployeeFactory(handle="mailer")
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.AUTO,
    )
    email_call = reply(
        tool_calls=[
            ("send_email", {"to": ["ops@example.com"], "subject": "Report", "body": "All good."})
        ]
    )
    # The second model call hangs, so the worker is mid-task when it is killed.
    model_server.enqueue(email_call, delay(60, reply("never seen")))

    first = Cluster(worker_env)
    try:
        task, _ = task_create(employee=employee, title="", input="Send the report", urgent=True)
        _wait(lambda: model_server.calls == 2, "the second model call", cluster=first)
        # Delivered and recorded as sent: the SMTP server has it a moment before the outbox
        # row says so, and a worker killed in between leaves it "sending" (never sent twice).
        _wait(
            lambda: OutboxEmail.objects.filter(status=OutboxStatus.SENT).exists(),
            "the email delivery",
            cluster=first,
        )
    finally:
        first.kill()
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING  # what a dead worker leaves behind

    model_server.reset()
    model_server.enqueue(reply("Report sent."))
    second = Cluster(worker_env)
    try:
        time.sleep(2.2)  # the dead worker's lease (TASK_LEASE_SECONDS=2) runs out
        call_command("run_due")
        _wait(
            lambda: Task.objects.get(pk=task.pk).status == TaskStatus.DONE,
            "the task to finish",
            cluster=second,
        )
    finally:
        second.stop()

    task.refresh_from_db()
    assert task.result == "Report sent."
    assert len(smtp.received) == 1
    assert smtp.received[0].recipients == ["ops@example.com"]
    assert OutboxEmail.objects.get().status == OutboxStatus.SENT
    assert model_server.calls == 1  # the recorded email step was not asked for again
    # The killed worker's model call may have been answered and billed: its reservation was
    # counted as spent (on the task and the day), and a step says so.
    charged = Step.objects.get(task=task, kind=StepKind.NOTE, payload__has_key="charged")
    assert Decimal(charged.payload["charged"]) > 0
    spend = DailySpend.objects.get(employee=employee)
    assert spend.reserved == 0 and spend.spent == task.cost
    assert task.cost >= Decimal(charged.payload["charged"])
    assert list(task.runs.order_by("number").values_list("status", flat=True)) == [
        RunStatus.LOST,
        RunStatus.FINISHED,
    ]


def test_parallel_runs_of_one_employee_never_jointly_pass_the_day_ceiling(model_server, settings):
    # $0.001 an output token, prompts free.
    settings.MODEL_PRICES = {"gpt-4o-mini": (Decimal("0"), Decimal("1000"))}
    employee = EmployeeFactory(
        handle="spender",
        max_cost_per_day=Decimal("2.00"),
        max_cost_per_task=Decimal("100"),
        max_tokens_per_turn=1500,
    )
    # Each call reserves $1.50 up front; two at once would need $3.00 of a $2.00 day.
    model_server.enqueue(
        dynamic(lambda body: delay(0.5, reply("done", prompt_tokens=400, completion_tokens=500)))
    )
    tasks = [
        task_create(employee=employee, title="", input=f"job {n}", urgent=True)[0] for n in range(2)
    ]
    outcomes: dict[int, str | None] = {}

    def work(task_id: int) -> None:
        try:
            outcomes[task_id] = run_task(task_id)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(task.pk,)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes.values()) == sorted([TaskStatus.DONE, TaskStatus.BUDGET_EXHAUSTED])
    spend = DailySpend.objects.get(employee=employee)
    assert spend.spent == Decimal("0.5") and spend.reserved == 0
    assert model_server.calls == 1


def test_one_worker_runs_many_waiting_loops_at_once_on_a_small_pool(model_server, worker_env):
    """TASKS_PER_WORKER=4 with a 3-connection pool: 8 tasks of 2 slow calls overlap."""
    employee = EmployeeFactory(handle="busy", max_cost_per_task=Decimal("100"))
    ToolGrantFactory(
        employee=employee,
        tool_name="http_request",
        scope={"allowed_hosts": ["127.0.0.1"], "allowed_methods": ["GET"]},
        policy=ToolPolicy.AUTO,
    )
    ping = model_server.base_url + "/ping"

    def slow(body):
        answered = any(message["role"] == "tool" for message in body["messages"])
        if answered:
            return delay(0.5, reply("done"))
        return delay(0.5, reply(tool_calls=[("http_request", {"method": "GET", "url": ping})]))

    model_server.enqueue(dynamic(slow))
    env = {
        **worker_env,
        "Q_WORKERS": "1",
        "TASKS_PER_WORKER": "4",
        "DATABASE_POOL_SIZE": "3",
        "TASK_LEASE_SECONDS": "60",
    }
    cluster = Cluster(env)
    try:
        started = time.monotonic()
        tasks = [
            task_create(employee=employee, title="", input=f"job {n}", urgent=True)[0]
            for n in range(8)
        ]
        ids = [t.pk for t in tasks]
        try:
            _wait(
                lambda: Task.objects.filter(pk__in=ids, status=TaskStatus.DONE).count() == 8,
                "eight tasks to finish",
            )
        except AssertionError:
            states = list(Task.objects.filter(pk__in=ids).values_list("status", "status_reason"))
            raise AssertionError(f"{states}\n{''.join(cluster.output[-60:])}") from None
        elapsed = time.monotonic() - started
    finally:
        cluster.stop()
    # One at a time would take 8 x 2 x 0.5 s = 8 s; four at a time about 2 s.
    assert elapsed < 5.5, f"took {elapsed:.1f}s"
    # Each loop thread held its tasks under its own lease owner id.
    owners = set(Run.objects.filter(task__in=ids).values_list("worker", flat=True))
    assert len(owners) > 1, owners


def test_each_worker_process_of_a_cluster_has_its_own_lease_owner_id(model_server, worker_env):
    employee = EmployeeFactory(handle="twins", max_cost_per_task=Decimal("100"))
    # Each call waits for the other, so the two tasks are held at the same time: by the
    # cluster's two workers (one worker alone could not take the second while in the first).
    both_calling = threading.Barrier(2, timeout=20)

    def answer(body):
        both_calling.wait()
        return reply("done")

    model_server.enqueue(dynamic(answer))
    cluster = Cluster({**worker_env, "Q_WORKERS": "2", "TASK_LEASE_SECONDS": "60"})
    try:
        tasks = [
            task_create(employee=employee, title="", input=f"job {n}", urgent=True)[0]
            for n in range(2)
        ]
        ids = [t.pk for t in tasks]
        _wait(
            lambda: Task.objects.filter(pk__in=ids, status=TaskStatus.DONE).count() == 2,
            "both tasks to finish",
            cluster=cluster,
        )
    finally:
        cluster.stop()
    owners = list(Run.objects.filter(task__in=ids).values_list("worker", flat=True))
    pids = {owner.split(":")[1] for owner in owners}
    assert len(set(owners)) == 2 and len(pids) == 2, owners
