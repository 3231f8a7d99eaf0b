"""The lease heartbeat: a live run keeps its task, a lost lease is never renewed by its old
holder, and a run past the job's time limit is no longer renewed."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone

from tasks.claims import task_claim
from tasks.leases import lease_heartbeat, leases_renew, renew_interval
from tasks.loop import run_task
from tasks.models import Run, RunStatus, Task, TaskStatus
from tests.factories import EmployeeFactory, assigned_task
from tests.fakes.openai_server import delay, reply


def _running(task: Task, owner: str, expires_in: float) -> None:
    Task.objects.filter(pk=task.pk).update(
        status=TaskStatus.RUNNING,
        lease_owner=owner,
        lease_expires_at=timezone.now() + timedelta(seconds=expires_in),
    )


@pytest.mark.django_db(transaction=True)
def test_a_model_call_longer_than_the_lease_keeps_the_task_and_nobody_else_can_claim_it(
    model_server, settings
):
    settings.TASK_LEASE_SECONDS = 2
    settings.TASK_LEASE_RENEW_SECONDS = 1
    assert renew_interval() == pytest.approx(2 / 3)
    employee = EmployeeFactory(handle="slow", max_cost_per_task=Decimal("100"))
    model_server.enqueue(delay(4, reply("Done at last.")))
    task = assigned_task(employee, "Think hard.")
    outcome: list[str | None] = []

    def work() -> None:
        try:
            outcome.append(run_task(task.pk, worker="worker-a"))
        finally:
            connections.close_all()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while model_server.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # the claim's 2 s lease would have run out by now
        task.refresh_from_db()
        assert task.status == TaskStatus.RUNNING and task.lease_owner == "worker-a"
        assert task.lease_expires_at > timezone.now()
        assert task_claim(task_id=task.pk, worker="worker-b") is None
    finally:
        thread.join(timeout=20)
    assert outcome == [TaskStatus.DONE]
    assert list(Run.objects.filter(task=task).values_list("status", flat=True)) == [
        RunStatus.FINISHED
    ]


@pytest.mark.django_db
def test_a_worker_that_lost_its_lease_never_renews_the_new_holders():
    employee = EmployeeFactory(handle="two")
    mine, taken = assigned_task(employee, "mine"), assigned_task(employee, "taken")
    _running(mine, "worker-a", expires_in=1)
    # worker-a held `taken` too, but its lease ran out and worker-b claimed it.
    _running(taken, "worker-b", expires_in=1)
    before = Task.objects.get(pk=taken.pk).lease_expires_at
    with lease_heartbeat(task_id=mine.pk, worker="worker-a"):
        with lease_heartbeat(task_id=taken.pk, worker="worker-a"):
            assert leases_renew() == {mine.pk}
    assert Task.objects.get(pk=taken.pk).lease_expires_at == before
    assert Task.objects.get(pk=mine.pk).lease_expires_at > timezone.now() + timedelta(seconds=10)
    assert leases_renew() == set()  # released: nothing held any more


@pytest.mark.django_db
def test_a_finished_task_and_a_run_past_the_job_timeout_are_not_renewed(settings):
    employee = EmployeeFactory(handle="late")
    done, late = assigned_task(employee, "done"), assigned_task(employee, "late")
    Task.objects.filter(pk=done.pk).update(status=TaskStatus.DONE, lease_owner="worker-a")
    with lease_heartbeat(task_id=done.pk, worker="worker-a"):
        assert leases_renew() == set()
    _running(late, "worker-a", expires_in=1)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 0}  # django-q2 ended the job
    with lease_heartbeat(task_id=late.pk, worker="worker-a"):
        assert leases_renew() == set()


@pytest.mark.django_db
def test_a_job_takes_over_a_dead_workers_task_before_its_own(model_server):
    from tasks.jobs import run_task as run_task_job

    employee = EmployeeFactory(handle="busy", max_cost_per_task=Decimal("100"))
    model_server.enqueue(reply("Done."), reply("Done."))
    abandoned, queued = assigned_task(employee, "abandoned"), assigned_task(employee, "queued")
    # Its worker died 3 s ago; its run was queued again, behind `queued`'s job.
    _running(abandoned, "dead-worker", expires_in=-3)

    assert run_task_job(queued.pk) == TaskStatus.DONE

    first, second = Run.objects.order_by("started_at", "pk")
    assert (first.task_id, second.task_id) == (abandoned.pk, queued.pk)
    assert Task.objects.get(pk=abandoned.pk).status == TaskStatus.DONE
