"""With a real django-q2 worker cluster: the rules' job pauses an employee mid-task, and the
running task parks at its next step with nothing half done."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from django.db import connection
from django_q.models import Success
from django_q.tasks import async_task

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from anomalies.models import EmployeeRuleOverride, Rule
from employees.models import EmployeeStatus, ToolPolicy
from employees.services import employee_activate
from tasks.models import OutboxEmail, Step, StepKind, Task, TaskStatus
from tests.aiworkforce.helpers import clean_env
from tests.factories import EmployeeFactory, ToolGrantFactory, UserFactory, assigned_task
from tests.fakes.cluster import Cluster
from tests.fakes.openai_server import delay, reply
from tests.fakes.smtp_server import FakeSMTPServer

pytestmark = pytest.mark.django_db(transaction=True)


def _test_database_url() -> str:
    params = connection.get_connection_params()
    host = urllib.parse.quote(params["host"], safe="")
    port = f":{params['port']}" if params.get("port") else ""
    user = urllib.parse.quote(params.get("user") or "")
    password = urllib.parse.quote(params.get("password") or "")
    return f"postgres://{user}:{password}@{host}{port}/{connection.settings_dict['NAME']}"


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
        TASK_LEASE_SECONDS="5",
        Q_WORKERS="2",
        Q_TIMEOUT="20",
        Q_RETRY="30",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp.port),
    )


def _wait(condition, what: str, cluster: Cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    tasks = list(Task.objects.values_list("pk", "status", "status_reason"))
    raise AssertionError(f"timed out waiting for {what}; {tasks}\n{''.join(cluster.output[-60:])}")


def _passes() -> int:
    return Success.objects.filter(func="anomalies.jobs.evaluate_rules").count()


def test_the_rules_job_pauses_mid_task_and_the_task_parks_before_its_next_action(
    model_server, smtp, worker_env
):
    boss = UserFactory(username="looper-boss", email="boss@example.com")
    employee = EmployeeFactory(handle="looper", name="Looper", manager=boss)
    for tool, scope in (
        ("http_request", {"allowed_hosts": ["127.0.0.1"], "allowed_methods": ["GET"]}),
        ("send_email", {"allowed_domains": ["example.com"]}),
    ):
        ToolGrantFactory(employee=employee, tool_name=tool, scope=scope, policy=ToolPolicy.AUTO)
    EmployeeRuleOverride.objects.create(employee=employee, rule=Rule.TOOL_SURGE, threshold=2)
    ping = ("http_request", {"method": "GET", "url": model_server.base_url + "/ping"})
    email = ("send_email", {"to": ["ops@example.com"], "subject": "Again", "body": "Again."})
    # Three calls of one tool, then a slow model call whose answer is an email: the pause
    # lands while that call is in flight, so the email is the next action.
    model_server.enqueue(reply(tool_calls=[ping] * 3), delay(4, reply(tool_calls=[email])))

    cluster = Cluster(worker_env)
    try:
        task = assigned_task(employee, "Ping the service")
        _wait(lambda: model_server.calls == 2, "the slow model call", cluster)
        assert Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING
        async_task("anomalies.jobs.evaluate_rules")  # what the every-minute schedule runs
        _wait(
            lambda: Task.objects.get(pk=task.pk).status == TaskStatus.PAUSED,
            "the task to park",
            cluster,
        )
        employee.refresh_from_db()
        assert employee.status == EmployeeStatus.PAUSED
        _wait(lambda: _passes() == 1, "the first pass to report", cluster)
        assert Success.objects.get(func="anomalies.jobs.evaluate_rules").result == "paused: 1"
        assert employee.status_reason.startswith("Paused by the tool-call-surge rule: 3 calls")
        _wait(lambda: len(smtp.received) == 1, "the managers' mail", cluster)
        assert smtp.received[0].recipients == ["boss@example.com"]

        # Nothing half done: the email the model asked for after the pause was never started.
        assert not OutboxEmail.objects.exists()
        names = [s.payload["name"] for s in Step.objects.filter(task=task, kind=StepKind.TOOL_CALL)]
        assert "send_email" not in names and names.count("http_request") == 6  # started + done

        # A manager resumes it: the task carries on from its next step (the email), and the
        # old calls do not pause it again.
        model_server.enqueue(reply("Stopped pinging."))
        employee_activate(employee=employee, actor=Actor.for_user(boss))
        _wait(
            lambda: Task.objects.get(pk=task.pk).status == TaskStatus.DONE,
            "the task to finish",
            cluster,
        )
        async_task("anomalies.jobs.evaluate_rules")
        _wait(lambda: _passes() == 2, "the second pass", cluster)
    finally:
        cluster.stop()
    employee.refresh_from_db()
    assert employee.status == EmployeeStatus.ACTIVE
    assert AuditEntry.objects.filter(action="anomaly.triggered").count() == 1
    # After the resume the email the model had asked for goes out, whole and once.
    assert OutboxEmail.objects.get(task=task).to == ["ops@example.com"]
    assert sorted(r.recipients[0] for r in smtp.received) == [
        "boss@example.com",
        "ops@example.com",
    ]
