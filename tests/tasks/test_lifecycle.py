"""Lifecycle and hours: who may act, when, and what shadow mode does."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from aiworkforce.audit import Actor
from approvals.models import ApprovalRequest
from employees import services as employee_services
from employees.models import Duty, EmployeeStatus
from tasks.jobs import run_due
from tasks.loop import run_task
from tasks.models import OutboxEmail, Step, StepKind, Task, TaskStatus
from tasks.services import TaskRefused, task_create, task_dispatch
from tasks.triggers import duties_materialise
from tests.fakes.openai_server import reply

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("tests")


def _email():
    return reply(
        tool_calls=[("send_email", {"to": ["a@example.com"], "subject": "Hi", "body": "Hello"})]
    )


def test_shadow_employee_proposes_side_effects_without_executing_or_asking(model_server, clerk):
    employee_services.employee_transition(employee=clerk, to=EmployeeStatus.SHADOW, actor=SYSTEM)
    model_server.enqueue(_email(), reply("Proposed an email."))
    task, _ = task_create(employee=clerk, title="", input="Write to the customer", urgent=True)
    assert run_task(task.pk) == TaskStatus.DONE
    [step] = Step.objects.filter(task=task, kind=StepKind.TOOL_CALL)
    assert step.payload["status"] == "proposed"
    assert step.payload["result"]["proposed_arguments"]["to"] == ["a@example.com"]
    assert not OutboxEmail.objects.exists() and not ApprovalRequest.objects.exists()


def test_paused_employee_takes_no_new_step_and_resumes_when_activated(model_server, clerk):
    task, _ = task_create(employee=clerk, title="", input="Do it", urgent=True)
    employee_services.employee_pause(employee=clerk, actor=SYSTEM)
    assert run_task(task.pk) == TaskStatus.PAUSED
    assert model_server.calls == 0
    employee_services.employee_activate(employee=clerk, actor=SYSTEM)
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    model_server.enqueue(reply("done"))
    assert run_task(task.pk) == TaskStatus.DONE


def test_offboarding_cancels_open_work_and_refuses_new_tasks(model_server, clerk):
    task, _ = task_create(employee=clerk, title="", input="Do it", urgent=True)
    employee_services.employee_offboard(employee=clerk, actor=SYSTEM)
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELLED
    with pytest.raises(TaskRefused, match="has been offboarded and takes no new tasks"):
        task_create(employee=clerk, title="", input="More work")


def test_work_arriving_off_hours_waits_unless_urgent(clerk):
    employee_services.working_hours_set(
        employee=clerk,
        actor=SYSTEM,
        always_on=False,
        tz="Europe/Berlin",
        windows=[(day, time(9), time(17)) for day in range(5)],
    )
    # Saturday 01:00 in Berlin.
    saturday_night = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    task, _ = task_create(employee=clerk, title="", input="Cold email", dispatch=False)
    assert task_dispatch(task=task, now=saturday_night) == TaskStatus.WAITING_HOURS
    task.refresh_from_db()
    assert "Outside Clerk's working hours" in task.status_reason
    urgent, _ = task_create(
        employee=clerk, title="", input="Server down", urgent=True, dispatch=False
    )
    assert task_dispatch(task=urgent, now=saturday_night) == TaskStatus.QUEUED
    # Monday 10:00 Berlin: the waiting task is dispatched.
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert task_dispatch(task=task, now=monday) == TaskStatus.QUEUED


def test_draft_employee_takes_no_tasks(clerk):
    from tests.factories import EmployeeFactory

    draft = EmployeeFactory(status=EmployeeStatus.DRAFT)
    with pytest.raises(TaskRefused, match="still a draft"):
        task_create(employee=draft, title="", input="x")


def test_idempotency_key_makes_one_task(clerk):
    first, created = task_create(employee=clerk, title="", input="x", idempotency_key="k1")
    again, created_again = task_create(employee=clerk, title="", input="x", idempotency_key="k1")
    assert created and not created_again and first.pk == again.pk


def test_duties_materialise_exactly_one_task_per_slot(clerk):
    duty = employee_services.duty_save(
        duty=Duty(
            employee=clerk,
            name="Sweep",
            cron="0 9 * * *",
            timezone="Europe/London",
            instructions="Sweep the inbox",
        ),
        actor=SYSTEM,
    )
    Duty.objects.filter(pk=duty.pk).update(created_at=datetime(2026, 11, 1, tzinfo=UTC))
    nine_oh_five = datetime(2026, 11, 20, 9, 5, tzinfo=UTC)
    assert duties_materialise(now=nine_oh_five) == 1
    assert duties_materialise(now=nine_oh_five) == 0
    assert duties_materialise(now=nine_oh_five + timedelta(hours=3)) == 0
    task = Task.objects.get()
    assert task.idempotency_key == f"duty:{duty.pk}:2026-11-20T09:00:00+00:00"
    assert task.source == "duty" and task.input == "Sweep the inbox"
    # Next day's slot makes exactly one more; the days in between are not replayed.
    assert duties_materialise(now=nine_oh_five + timedelta(days=3)) == 1
    assert Task.objects.count() == 2


def test_a_new_duty_does_not_fire_for_a_slot_before_it_existed(clerk):
    employee_services.duty_save(
        duty=Duty(employee=clerk, name="Sweep", cron="0 9 * * *", instructions="x"), actor=SYSTEM
    )
    assert duties_materialise(now=timezone.now()) == 0


def test_disabled_duties_and_inactive_employees_create_nothing(clerk):
    duty = employee_services.duty_save(
        duty=Duty(employee=clerk, name="Sweep", cron="* * * * *", instructions="x", enabled=False),
        actor=SYSTEM,
    )
    Duty.objects.filter(pk=duty.pk).update(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert duties_materialise() == 0


def test_run_due_reclaims_a_dead_workers_task(model_server, clerk):
    task, _ = task_create(employee=clerk, title="", input="x", urgent=True)
    Task.objects.filter(pk=task.pk).update(
        status=TaskStatus.RUNNING,
        lease_owner="dead-worker",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert run_due()["reclaimed"] == 1
    model_server.enqueue(reply("finished by the new worker"))
    assert run_task(task.pk) == TaskStatus.DONE
    assert task.runs.count() == 1


def test_a_live_lease_cannot_be_taken(clerk):
    task, _ = task_create(employee=clerk, title="", input="x", urgent=True)
    Task.objects.filter(pk=task.pk).update(
        status=TaskStatus.RUNNING,
        lease_owner="busy-worker",
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert run_task(task.pk) is None


def test_the_batch_pass_is_scheduled_once_by_name():
    from importlib import import_module

    from django.apps import apps as django_apps
    from django_q.models import Schedule

    assert Schedule.objects.filter(name="run-due", func="tasks.jobs.run_due").count() == 1
    migration = import_module("tasks.migrations.0003_register_schedules")
    migration.register(django_apps, None)  # running the registration again changes nothing
    assert Schedule.objects.filter(name="run-due").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_out_a_row_locked_for_a_moment():
    """A delegated child reserving from its root's budget locks the root's row for a moment;
    a claim of the root then must not give up (the task would sit queued until run_due)."""
    import threading

    import psycopg
    from django.db import connection

    from tasks.claims import task_claim
    from tests.factories import EmployeeFactory

    task, _ = task_create(
        employee=EmployeeFactory(), title="Root", input="Go.", urgent=True, dispatch=False
    )
    params = connection.get_connection_params()
    child = psycopg.connect(
        **{k: params[k] for k in ("dbname", "host", "port", "user", "password") if k in params}
    )
    try:
        child.execute("SELECT 1 FROM tasks_task WHERE id = %s FOR UPDATE", [task.pk])
        threading.Timer(0.1, child.rollback).start()
        claimed = task_claim(task_id=task.pk, worker="w1")
        assert claimed is not None and claimed.task.status == TaskStatus.RUNNING
        assert task_claim(task_id=task.pk, worker="w2") is None  # it runs: no second claim
    finally:
        child.close()
