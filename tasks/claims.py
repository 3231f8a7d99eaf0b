"""Claiming a task for a worker: the one statement that hands a task to exactly one worker.

Invariant: a task is run by at most one worker at a time (a compare-and-swap on its status and
lease), and a dead worker's unsettled reservation is charged as spent exactly once, in the same
statement that takes the task from it.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from aiworkforce.audit import Actor, audit_insert_sql, audit_log
from employees.models import Employee, Team, ToolGrant
from tasks.models import Run, Task, TaskStatus
from tasks.steps import loop_cursor

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
# ToolGrant.Meta.ordering; created_at and suspended_reason are left deferred, and suspended_at
# comes as JSON text: the loop only asks whether it is set).
# ToolGrant.from_db takes the values in the model's field order, so the list is built from it.
_GRANT_FIELDS = tuple(
    field.attname
    for field in ToolGrant._meta.concrete_fields
    if field.attname not in ("created_at", "suspended_reason")
)
_GRANTS_SQL = (
    "(SELECT json_agg(json_build_array("  # noqa: S608 - column names of the model
    + ", ".join(f"g.{name}" for name in _GRANT_FIELDS)
    + ") ORDER BY g.tool_name) FROM employees_toolgrant g WHERE g.employee_id = e.id) AS grants"
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


def expired_leases(*, limit: int) -> list[int]:
    """Running tasks whose worker stopped renewing its lease (it died), longest expired first.

    Their runs were queued again, behind every job queued since: a worker starting a job takes
    one of these over first, so a dead worker's task resumes soon even when the queue is long.
    """
    return list(
        Task.objects.filter(status=TaskStatus.RUNNING, lease_expires_at__lt=timezone.now())
        .order_by("lease_expires_at")
        .values_list("pk", flat=True)[:limit]
    )


@dataclass(frozen=True)
class Claim:
    """A task taken by a worker: the task (with employee and team), its new run, its grants."""

    task: Task
    run: Run
    # All the employee's grants, read by the claim statement (the loop leaves out "never").
    grants: list[ToolGrant]


def task_claim(*, task_id: int, worker: str | None = None) -> Claim | None:
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
    task, grants = _claimed_task(row[6:])
    run = Run(id=run_id, task=task, number=number, worker=worker, started_at=started_at)
    if old_status == TaskStatus.RUNNING:
        audit_log(
            action="task.reclaimed",
            actor=Actor.system(f"worker {worker}"),
            subject=task,
            data={"from": old_owner, "charged": str(charged)},
        )
    return Claim(task=task, run=run, grants=grants)


def _claimed_task(values) -> tuple[Task, list[ToolGrant]]:
    """The task, employee, team and grants read by the claim statement, wired together."""
    task_end = len(Task._meta.concrete_fields)
    employee_end = task_end + len(Employee._meta.concrete_fields)
    task = _from_values(Task, values[:task_end])
    employee = _from_values(Employee, values[task_end:employee_end])
    employee.team = _from_values(Team, values[employee_end:-1])
    task.employee = employee
    grants = [
        ToolGrant.from_db(connection.alias, _GRANT_FIELDS, grant) for grant in values[-1] or []
    ]
    return task, grants
