"""Every change of a task's state: creation, dispatch, claim, park, finish.

Status changes are compare-and-swaps; a count other than 1 means someone else got there first.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from aiworkforce.audit import Actor, audit_insert_sql, audit_log
from aiworkforce.storable import validate_storable
from employees.models import Employee, EmployeeStatus, Team, ToolGrant
from tasks.models import (
    FINISHED_STATUSES,
    Run,
    Task,
    TaskPriority,
    TaskSource,
    TaskStatus,
)
from tasks.steps import loop_cursor

ACTING_STATUSES = {EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW}
# Statuses from which a dispatch may (re)start work.
DISPATCHABLE = {TaskStatus.QUEUED, TaskStatus.WAITING_HOURS, TaskStatus.PAUSED}

_worker_ids = threading.local()


def worker_id() -> str:
    """This worker's lease owner id: its own in each process and each thread.

    Computed when first asked in the process and thread that runs the loop, never at import:
    django-q2 forks its workers from a parent that imported this module, and a shared id would
    let one worker's lease check pass for another's.
    """
    pid = os.getpid()
    cached = getattr(_worker_ids, "value", None)
    if cached is None or cached[0] != pid:
        thread = threading.current_thread().name.replace(":", "-")[:24]
        cached = (pid, f"{socket.gethostname()[:40]}:{pid}:{thread}:{uuid.uuid4().hex[:6]}")
        _worker_ids.value = cached
    return cached[1]


class TaskRefused(Exception):
    """A task that cannot be created, with a reason for the person or system that asked."""


def task_create(
    *,
    employee: Employee,
    title: str,
    input: str,
    source: str = TaskSource.MANUAL,
    requested_by_user=None,
    requested_by_employee: Employee | None = None,
    urgent: bool = False,
    priority: int = TaskPriority.NORMAL,
    due_at: datetime | None = None,
    parent: Task | None = None,
    expected_by: datetime | None = None,
    idempotency_key: str | None = None,
    dispatch: bool = True,
) -> tuple[Task, bool]:
    """Create a task (or return the one with the same idempotency key) and dispatch it."""
    if employee.status == EmployeeStatus.OFFBOARDED:
        raise TaskRefused(f"{employee.name} has been offboarded and takes no new tasks.")
    if employee.status == EmployeeStatus.DRAFT:
        raise TaskRefused(f"{employee.name} is still a draft; activate or shadow it first.")
    input = (input or "").strip()
    if not input:
        raise ValidationError("A task needs instructions.")
    title = (title or "").strip()[:200] or input.splitlines()[0][:200]
    # PostgreSQL text cannot hold NUL (and UTF-8 no lone surrogate): a clear refusal, not a 500.
    validate_storable(input, what="The instructions")
    validate_storable(title, what="The title")
    if idempotency_key:
        existing = Task.objects.filter(employee=employee, idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    task = Task(
        employee=employee,
        title=title,
        input=input,
        source=source,
        requested_by_user=requested_by_user if getattr(requested_by_user, "pk", None) else None,
        requested_by_employee=requested_by_employee,
        urgent=urgent,
        priority=priority,
        due_at=due_at,
        parent=parent,
        # A delegated task belongs to its parent's tree: the root's budget covers it too.
        root_id=(parent.root_id or parent.pk) if parent is not None else None,
        depth=parent.depth + 1 if parent is not None else 0,
        expected_by=expected_by,
        idempotency_key=idempotency_key or None,
    )
    try:
        with transaction.atomic():
            task.save()
            if requested_by_employee is not None:
                actor = Actor.for_employee(requested_by_employee)
            else:
                actor = Actor.for_user(requested_by_user)
            audit_log(
                action="task.created",
                actor=actor,
                subject=task,
                data={"employee": employee.handle, "source": source, "urgent": urgent},
            )
    except IntegrityError:
        # A concurrent trigger with the same key won the race: theirs is the task.
        existing = Task.objects.filter(employee=employee, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    if dispatch:
        task_dispatch(task=task)
    return task, True


def task_dispatch(*, task: Task, now: datetime | None = None, enqueue: bool = True) -> str:
    """Queue a task for a worker when it may run now; otherwise record why it waits.

    enqueue=False is for a caller that runs the task itself right away (`assign --wait`).
    """
    now = now or timezone.now()
    employee = task.employee
    if task.status not in DISPATCHABLE:
        return task.status
    if employee.status == EmployeeStatus.PAUSED:
        return _set_waiting(task, TaskStatus.PAUSED, f"{employee.name} is paused.")
    if employee.status not in ACTING_STATUSES:
        return task.status
    if task.due_at and task.due_at > now:
        return _set_waiting(task, TaskStatus.QUEUED, f"Due at {task.due_at:%Y-%m-%d %H:%M %Z}.")
    if not task.urgent and not employee.is_on_duty(now):
        return _set_waiting(
            task,
            TaskStatus.WAITING_HOURS,
            f"Outside {employee.name}'s working hours; waits for the next window.",
        )
    Task.objects.filter(pk=task.pk, status__in=DISPATCHABLE).update(
        status=TaskStatus.QUEUED, status_reason="", updated_at=now
    )
    task.status = TaskStatus.QUEUED
    if enqueue:
        transaction.on_commit(lambda: enqueue_run(task.pk))
    return TaskStatus.QUEUED


def _set_waiting(task: Task, status: str, reason: str) -> str:
    Task.objects.filter(pk=task.pk, status__in=DISPATCHABLE).update(
        status=status, status_reason=reason[:500], updated_at=timezone.now()
    )
    task.status, task.status_reason = status, reason
    return status


def enqueue_run(task_id: int) -> None:
    from django_q.tasks import async_task

    async_task("tasks.jobs.run_task", task_id, task_name=f"task {task_id}", group="tasks")


# One statement claims the task, marks a dead worker's run as lost, starts our run and writes
# the audit entry. The row lock (SKIP LOCKED) and the status condition make it a compare-and-swap.
# Invariant (money): a dead worker's unsettled reservation is charged as spent, on the task and
# on the day it was reserved, in the same statement that takes the task from it, so a crash can
# neither lose the charge nor leave the day's money reserved. (Its root request's
# descendants_cost already counts it: there, reserved simply becomes spent.)
_CLAIM_SQL = """
WITH old AS (
    SELECT id, status, lease_owner, reserved_cost, reserved_day, employee_id FROM tasks_task
    WHERE id = %(task)s
      AND ((status = 'queued' AND (due_at IS NULL OR due_at <= now()))
           OR (status = 'running' AND lease_expires_at < now()))
    FOR UPDATE SKIP LOCKED
), charge AS (
    SELECT CASE WHEN old.status = 'running' THEN old.reserved_cost ELSE 0 END AS amount,
        coalesce(old.reserved_day, (now() AT TIME ZONE ce.timezone)::date) AS day
    FROM old JOIN employees_employee ce ON ce.id = old.employee_id
), claimed AS (
    UPDATE tasks_task t SET status = 'running', status_reason = '', lease_owner = %(worker)s,
        lease_expires_at = now() + make_interval(secs => %(lease)s), reserved_cost = 0,
        reserved_day = NULL, reservation_id = '', cost = t.cost + charge.amount,
        started_at = coalesce(t.started_at, now()), updated_at = now()
    FROM old, charge WHERE t.id = old.id
    RETURNING old.status AS old_status, old.lease_owner AS old_owner, charge.amount AS charged,
        {task_columns}
), charge_day AS (
    UPDATE tasks_dailyspend d SET reserved = GREATEST(d.reserved - charge.amount, 0),
        spent = d.spent + charge.amount
    FROM old, charge
    WHERE charge.amount > 0 AND d.employee_id = old.employee_id AND d.day = charge.day
), lost AS (
    UPDATE tasks_run SET status = 'lost', finished_at = now(), error = 'the lease of its worker expired'
    WHERE task_id = %(task)s AND status = 'running'
      AND EXISTS (SELECT 1 FROM claimed WHERE old_status = 'running')
), run AS (
    INSERT INTO tasks_run (task_id, number, status, worker, started_at, error)
    SELECT %(task)s, (SELECT count(*) + 1 FROM tasks_run WHERE task_id = %(task)s), 'running',
        %(worker)s, now(), ''
    WHERE EXISTS (SELECT 1 FROM claimed)
    RETURNING id, number, started_at
), charge_note AS (
    INSERT INTO tasks_step
        (task_id, run_id, seq, kind, payload, tokens_in, tokens_out, cost, latency_ms, created_at)
    SELECT %(task)s, run.id,
        (SELECT coalesce(max(seq), 0) + 1 FROM tasks_step WHERE task_id = %(task)s), 'note',
        jsonb_build_object(
            'charged', charge.amount::text,
            'text', 'The worker running this task stopped during a model call; the call''s '
                || 'reservation of $' || charge.amount::text || ' was counted as spent, since '
                || 'the endpoint may have answered (and billed) it.'),
        0, 0, 0, 0, now()
    FROM run, charge WHERE charge.amount > 0
), audit AS ({audit})
SELECT run.id, run.number, run.started_at, claimed.old_status, claimed.old_owner,
    claimed.charged,
    {entity_columns}
FROM run, claimed
    JOIN employees_employee e ON e.id = claimed.employee_id
    JOIN employees_team tm ON tm.id = e.team_id
"""

# What the loop's first turn needs comes back with the claim, so it costs no more round trips:
# the task as updated, its employee and team, and the employee's tool grants (in the order of
# ToolGrant.Meta.ordering; created_at is left deferred).
_GRANT_FIELDS = ("id", "employee_id", "tool_name", "scope", "policy")
_GRANTS_SQL = (
    "(SELECT json_agg(json_build_array(g.id, g.employee_id, g.tool_name, g.scope, g.policy) "
    "ORDER BY g.tool_name) FROM employees_toolgrant g WHERE g.employee_id = e.id) AS grants"
)


@functools.cache
def _claim_sql() -> str:
    def columns(model, alias: str) -> str:
        return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)

    return _CLAIM_SQL.replace("{task_columns}", columns(Task, "t")).replace(
        "{entity_columns}",
        f"{columns(Task, 'claimed')}, {columns(Employee, 'e')}, {columns(Team, 'tm')}, "
        + _GRANTS_SQL,
    )


def _from_values(model, values):
    """A model instance from its concrete columns' values, as the ORM would load it."""
    fields = model._meta.concrete_fields
    values = [
        _convert(field, value) if value is not None else None
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], values)


def _convert(field, value):
    for converter in field.get_db_converters(connection):  # JSONField parses its text
        value = converter(value, None, connection)
    return value


CLAIM_ATTEMPTS = 6  # about 0.3 s of retries in all


def _waiting_to_run(task_id: int) -> bool:
    """The claim's condition, read without a lock."""
    now = timezone.now()
    return (
        Task.objects.filter(pk=task_id)
        .filter(
            Q(status=TaskStatus.QUEUED, due_at__isnull=True)
            | Q(status=TaskStatus.QUEUED, due_at__lte=now)
            | Q(status=TaskStatus.RUNNING, lease_expires_at__lt=now)
        )
        .exists()
    )


def task_claim(*, task_id: int, worker: str | None = None) -> tuple[Task, Run] | None:
    """Take a queued task (or one whose worker's lease expired) for this worker, or None."""
    worker = worker or worker_id()
    audit_sql, audit_params = audit_insert_sql(
        action="task.claimed",
        actor=Actor.system(f"worker {worker}"),
        subject=None,
        data={"task": task_id, "worker": worker},
        when="EXISTS (SELECT 1 FROM claimed)",
        named="audit",
    )
    params = {"task": task_id, "worker": worker, "lease": settings.TASK_LEASE_SECONDS}
    for attempt in range(CLAIM_ATTEMPTS):
        # One autocommitted statement: the claim, the new run and the audit entry commit
        # together.
        with loop_cursor() as cursor:
            cursor.execute(_claim_sql().replace("{audit}", audit_sql), {**params, **audit_params})
            row = cursor.fetchone()
        # SKIP LOCKED also skips a row locked for a moment by something else than a claim: a
        # delegated child reserving from this (root) task's budget. Try again while the task
        # still waits to run; once another worker has it, it no longer does.
        if row is not None or not _waiting_to_run(task_id):
            break
        time.sleep(0.02 * (attempt + 1))
    if row is None:
        return None
    run_id, number, started_at, old_status, old_owner, charged = row[:6]
    task = _claimed_task(row[6:])
    run = Run(id=run_id, task=task, number=number, worker=worker, started_at=started_at)
    if old_status == TaskStatus.RUNNING:
        audit_log(
            action="task.reclaimed",
            actor=Actor.system(f"worker {worker}"),
            subject=task,
            data={"from": old_owner, "charged": str(charged)},
        )
    return task, run


def _claimed_task(values) -> Task:
    """The task, employee, team and grants read by the claim statement, wired together."""
    task_end = len(Task._meta.concrete_fields)
    employee_end = task_end + len(Employee._meta.concrete_fields)
    task = _from_values(Task, values[:task_end])
    employee = _from_values(Employee, values[task_end:employee_end])
    employee.team = _from_values(Team, values[employee_end:-1])
    task.employee = employee
    # All the employee's grants (the loop leaves out those it may never use).
    task.claimed_grants = [
        ToolGrant.from_db(connection.alias, _GRANT_FIELDS, grant) for grant in values[-1] or []
    ]
    return task


def task_release(
    *,
    task: Task,
    status: str,
    reason: str = "",
    result: str | None = None,
    worker: str | None = None,
) -> bool:
    """Leave the running state (parked or finished) if this worker still holds the task."""
    worker = worker or worker_id()
    now = timezone.now()
    fields = {
        "status": status,
        "status_reason": reason[:500],
        "lease_owner": "",
        "lease_expires_at": None,
        "updated_at": now,
    }
    if result is not None:
        fields["result"] = result
    if status in FINISHED_STATUSES:
        fields["finished_at"] = now
    with transaction.atomic():  # the change and its audit entry commit together
        changed = Task.objects.filter(
            pk=task.pk, status=TaskStatus.RUNNING, lease_owner=worker
        ).update(**fields)
        if changed:
            _audit_release(task, status, reason)
    if changed:
        task.status, task.status_reason = status, reason
    return bool(changed)


def _audit_release(task: Task, status: str, reason: str) -> None:
    audit_log(
        action=f"task.{_RELEASE_VERBS.get(status, 'parked')}",
        actor=Actor.for_employee(task.employee),
        subject=task,
        data={"status": status, "reason": reason[:500]},
    )


_RELEASE_VERBS = {
    TaskStatus.DONE: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "cancelled",
}


def task_resume(*, task: Task, from_statuses: set[str], actor: Actor, reason: str) -> bool:
    """Put a parked task back in the queue (after a decision, an answer or a raise)."""
    changed = Task.objects.filter(pk=task.pk, status__in=from_statuses).update(
        status=TaskStatus.QUEUED, status_reason="", updated_at=timezone.now()
    )
    if not changed:
        return False
    task.refresh_from_db()
    audit_log(action="task.resumed", actor=actor, subject=task, data={"reason": reason})
    task_dispatch(task=task)
    return True


@transaction.atomic
def task_cancel(*, task: Task, actor: Actor, reason: str, wake_parent: bool = True) -> bool:
    """Stop a task that has not finished (and what it delegated); its history stays."""
    from tasks import delegation

    # Descendants first: the same lock order as a delegated task's budget reservation.
    delegation.children_cancel(task=task, actor=actor, reason=reason)
    now = timezone.now()
    changed = (
        Task.objects.filter(pk=task.pk)
        .exclude(status__in=FINISHED_STATUSES)
        .update(
            status=TaskStatus.CANCELLED,
            status_reason=reason[:500],
            lease_owner="",
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
    if changed:
        # A child created while we waited for the parent's row lock is visible now: cancel it too.
        delegation.children_cancel(task=task, actor=actor, reason=reason)
        _close_open_requests(task)
        audit_log(action="task.cancelled", actor=actor, subject=task, data={"reason": reason})
        if wake_parent and task.parent_id:
            transaction.on_commit(lambda: delegation.parent_wake(child_id=task.pk))
    return bool(changed)


def _close_open_requests(task: Task) -> None:
    """A cancelled task's pending approvals and open escalations leave the inbox and the desk."""
    from approvals.models import (
        ApprovalRequest,
        ApprovalStatus,
        Escalation,
        EscalationStatus,
    )

    ApprovalRequest.objects.filter(task=task, status=ApprovalStatus.PENDING).update(
        status=ApprovalStatus.CANCELLED, decided_at=timezone.now()
    )
    Escalation.objects.filter(task=task, status=EscalationStatus.OPEN).update(
        status=EscalationStatus.CLOSED
    )


def tasks_reclaim_expired(*, now: datetime | None = None) -> int:
    """Requeue running tasks whose worker's lease ran out (a worker died)."""
    now = now or timezone.now()
    count = 0
    for task_id in Task.objects.filter(
        status=TaskStatus.RUNNING, lease_expires_at__lt=now
    ).values_list("pk", flat=True):
        transaction.on_commit(lambda task_id=task_id: enqueue_run(task_id))
        count += 1
    return count


def tasks_cancel_for_employee(*, employee: Employee, actor: Actor, reason: str) -> int:
    """Cancel every unfinished task of an employee (used when it is offboarded)."""
    count = 0
    for task in Task.objects.filter(employee=employee).exclude(status__in=FINISHED_STATUSES):
        count += task_cancel(task=task, actor=actor, reason=reason)
    return count


def tasks_dispatch_waiting(*, now: datetime | None = None, employee: Employee | None = None) -> int:
    """Dispatch queued and waiting tasks whose time has come (working hours, due times)."""
    now = now or timezone.now()
    count = 0
    # Queued tasks normally have a job in the broker already; only those left queued for a
    # minute (a due time that passed, a lost job) are dispatched again.
    waiting = Task.objects.filter(
        Q(status__in=[TaskStatus.WAITING_HOURS, TaskStatus.PAUSED])
        | Q(status=TaskStatus.QUEUED, updated_at__lt=now - timedelta(seconds=60)),
        employee__status__in=ACTING_STATUSES,
    )
    if employee is not None:
        waiting = waiting.filter(employee=employee)
    waiting = (
        waiting.filter(Q(due_at__isnull=True) | Q(due_at__lte=now))
        .select_related("employee")
        .prefetch_related("employee__working_windows")
    )
    for task in waiting:
        if task_dispatch(task=task, now=now) == TaskStatus.QUEUED:
            count += 1
    return count
