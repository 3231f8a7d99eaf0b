"""What the real-worker tests of the anomaly rules share: waiting on the cluster, running the
rules' job, hiring, and what they check after a pause (the fixtures are in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.urls import reverse
from django_q.models import Success
from django_q.tasks import async_task

from aiworkforce.models import AuditEntry
from anomalies.models import AnomalyPause, EmployeeRuleOverride
from anomalies.services import RULE_WORDS
from employees.models import Employee, EmployeeStatus
from tasks.models import Task
from tests.factories import EmployeeFactory
from tests.fakes.cluster import Cluster

EVALUATE = "anomalies.jobs.evaluate_rules"


def wait_for(condition: Callable[[], bool], what: str, cluster: Cluster, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    tasks = list(Task.objects.values_list("pk", "status", "status_reason"))
    raise AssertionError(f"timed out waiting for {what}; {tasks}\n{''.join(cluster.output[-60:])}")


def task_status(task: Task) -> str:
    return Task.objects.values_list("status", flat=True).get(pk=task.pk)


def evaluate(cluster: Cluster) -> str:
    """One pass of the rules, run by a worker as the every-minute schedule runs it."""
    before = Success.objects.filter(func=EVALUATE).count()
    async_task(EVALUATE)
    wait_for(lambda: Success.objects.filter(func=EVALUATE).count() > before, "a pass", cluster)
    return Success.objects.filter(func=EVALUATE).order_by("-stopped").first().result


def hire(manager, handle: str, **fields) -> Employee:
    team = manager.team_memberships.get().team
    return EmployeeFactory(handle=handle, name=handle.title(), team=team, **fields)


def override(employee: Employee, rule: str, **values) -> EmployeeRuleOverride:
    return EmployeeRuleOverride.objects.create(employee=employee, rule=rule, **values)


def assert_paused_by(employee: Employee, rule: str, figures: dict, reason: str, smtp) -> None:
    """Paused with the rule and figures as its reason, recorded, audited and mailed."""
    employee.refresh_from_db()
    assert employee.status == EmployeeStatus.PAUSED
    assert employee.status_reason == reason
    pause = AnomalyPause.objects.get(employee=employee)
    assert (pause.rule, pause.paused_at) == (rule, employee.status_changed_at)
    entry = AuditEntry.objects.get(action="anomaly.triggered", subject_id=str(employee.pk))
    assert entry.actor_label == "anomaly rules"
    assert entry.data == {"rule": rule, "figures": figures, "reason": reason}
    paused = AuditEntry.objects.get(action="employee.paused", subject_id=str(employee.pk))
    assert paused.data["reason"] == reason
    [mail] = [m for m in smtp.received if "was paused by the" in m.message["Subject"]]
    assert mail.recipients == ["boss@example.com"]
    assert mail.message["Subject"].endswith(
        f"{employee.name} was paused by the {RULE_WORDS[rule]} rule"
    )
    body = mail.message.get_payload(decode=True).decode()
    assert reason in body and f"/employees/{employee.handle}/" in body


def resume(client, manager, employee: Employee) -> None:
    """The manager resumes it from its profile page, as people do."""
    client.force_login(manager)
    response = client.post(
        reverse("employees:profile_status", args=[employee.handle]), {"to": "active"}
    )
    assert response.status_code == 302, response.content.decode()[:500]
    employee.refresh_from_db()
    assert employee.status == EmployeeStatus.ACTIVE
    entry = AuditEntry.objects.filter(action="employee.activated", subject_id=str(employee.pk))
    assert entry.get().actor_label == manager.username
