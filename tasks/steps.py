"""Writing steps: one SQL statement per step, carrying what must commit with it.

The loop's hot path writes each step together with its settlement or its audit entry in a
single statement (PostgreSQL data-modifying CTEs), so a step costs one round trip and one
commit. Everything else in the project uses the ORM; this is where the benchmark counts.
"""

from __future__ import annotations

import json
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from tasks.models import Run, Step, Task

STEP_INSERT = (
    "INSERT INTO tasks_step "
    "(task_id, run_id, seq, kind, payload, tokens_in, tokens_out, cost, latency_ms, created_at) "
    "SELECT %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, now()"
)

Part = tuple[str, str, list]  # (name, SQL, parameters) of one CTE

# Guards: a step is written only while its worker still holds the task ("owned"), and a step
# that acts on the world only while the employee may still act ("acting"). The row lock makes
# a concurrent cancel or pause wait for the statement, never slip in between.
GUARDS = {
    "owned": (
        "SELECT t.id FROM tasks_task t WHERE t.id = %s AND t.status = 'running' "
        "AND t.lease_owner = %s FOR UPDATE"
    ),
    "acting": (
        "SELECT t.id FROM tasks_task t JOIN employees_employee e ON e.id = t.employee_id "
        "WHERE t.id = %s AND t.status = 'running' AND t.lease_owner = %s "
        "AND e.status IN ('active', 'shadow') FOR UPDATE OF t"
    ),
}
GUARDED = "EXISTS (SELECT 1 FROM guard)"


def guard_part(kind: str, *, task: Task, worker: str) -> Part:
    return ("guard", GUARDS[kind], [task.pk, worker])


def step_write(
    *,
    task: Task,
    run: Run,
    seq: int,
    kind: str,
    payload: dict,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost: Decimal = Decimal("0"),
    latency_ms: int = 0,
    before: list[Part] = (),
    after: list[Part] = (),
    when: str = "",
) -> Step | None:
    """Insert a step with `before` and `after` statements in one; None if `when` was false."""
    step_sql = STEP_INSERT + (f" WHERE {when}" if when else "") + " RETURNING id, created_at"
    values = step_params(
        task=task,
        run=run,
        seq=seq,
        kind=kind,
        payload=payload,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=cost,
        latency_ms=latency_ms,
    )
    parts = [*before, ("step", step_sql, values), *after]
    sql = "WITH " + ", ".join(f"{name} AS ({body})" for name, body, _ in parts)
    sql += " SELECT id, created_at FROM step"
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for _, _, part_params in parts for value in part_params])
        row = cursor.fetchone()
    if row is None:
        return None
    return Step(
        id=row[0],
        task=task,
        run=run,
        seq=seq,
        kind=kind,
        payload=json.loads(json.dumps(payload, cls=DjangoJSONEncoder)),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=cost,
        latency_ms=latency_ms,
        created_at=row[1],
    )


def step_params(
    *,
    task: Task,
    run: Run,
    seq: int,
    kind: str,
    payload: dict,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost: Decimal = Decimal("0"),
    latency_ms: int = 0,
) -> list:
    """The values for STEP_INSERT, in its column order."""
    return [
        task.pk,
        run.pk,
        seq,
        kind,
        json.dumps(payload, cls=DjangoJSONEncoder),
        tokens_in,
        tokens_out,
        cost,
        latency_ms,
    ]


def settle_parts(
    *, task: Task, reserved: Decimal, cost: Decimal, tokens_in: int, tokens_out: int, day
) -> list[Part]:
    """Replace a reservation by what a model call cost, on the task and on the day."""
    return [
        (
            "settle_task",
            # GREATEST: after a reclaim the new owner has already zeroed this reservation.
            "UPDATE tasks_task SET reserved_cost = GREATEST(reserved_cost - %s, 0), "
            "cost = cost + %s, tokens_in = tokens_in + %s, tokens_out = tokens_out + %s "
            "WHERE id = %s",
            [reserved, cost, tokens_in, tokens_out, task.pk],
        ),
        (
            "settle_day",
            "UPDATE tasks_dailyspend SET reserved = GREATEST(reserved - %s, 0), "
            "spent = spent + %s WHERE employee_id = %s AND day = %s",
            [reserved, cost, task.employee_id, day],
        ),
    ]


def release_part(
    *,
    task: Task,
    worker: str,
    status: str,
    reason: str,
    result: str | None,
    finished: bool,
    settle: tuple[Decimal, Decimal, int, int] | None = None,
) -> Part:
    """Leave the running state if this worker still holds the task (RETURNING 1 when it did).

    A statement may update the task row only once, so a final answer's settlement
    (reserved, cost, tokens in, tokens out) is folded in here rather than in settle_parts.
    """
    sets = "status = %s, status_reason = %s, lease_owner = '', lease_expires_at = NULL, updated_at = now()"
    params: list = [status, reason[:500]]
    if result is not None:
        sets += ", result = %s"
        params.append(result)
    if finished:
        sets += ", finished_at = now()"
    if settle is not None:
        sets += (
            ", reserved_cost = GREATEST(reserved_cost - %s, 0), cost = cost + %s, "
            "tokens_in = tokens_in + %s, tokens_out = tokens_out + %s"
        )
        params.extend(settle)
    return (
        "released",
        # Built from fixed fragments; every value is a parameter.
        f"UPDATE tasks_task SET {sets} WHERE id = %s AND status = 'running' AND lease_owner = %s RETURNING 1",  # noqa: S608
        [*params, task.pk, worker],
    )
