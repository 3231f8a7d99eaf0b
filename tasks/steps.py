"""Writing steps: one SQL statement per step, carrying what must commit with it.

Invariant: a step is written only while its worker holds the task's lease (and a step that
acts on the world only while the employee may act), in the same statement as what must commit
with it (its audit entry, its settlement), so a step is never half-written.

The loop's hot path writes each step together with its settlement or its audit entry in a
single statement (PostgreSQL data-modifying CTEs), so a step costs one round trip and one
commit; a tool's outcome can even ride with the next turn's budget reservation
(budget.budget_reserve's `carry`). These statements are prepared once per connection
(loop_cursor). Everything else in the project uses the ORM; this is where the benchmark counts.
"""

from __future__ import annotations

import json
from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor

from aiworkforce.storable import storable_dumps
from tasks.models import Run, Step, Task

STEP_INSERT = (
    "INSERT INTO tasks_step "
    "(task_id, run_id, seq, kind, payload, tokens_in, tokens_out, cost, latency_ms, created_at) "
    "SELECT %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, now()"
)

Part = tuple[str, str, list]  # (name, SQL, parameters) of one CTE
Carry = tuple[Step, list[Part]]  # a step not yet written, and its statement's parts

# Who may take a step: an active or shadow employee; and a golden-task evaluation also while
# its employee is paused or not hired yet, because it only proposes (evaluations/services.py).
MAY_WORK_SQL = (
    "(e.status IN ('active', 'shadow') "
    "OR (t.source = 'evaluation' AND e.status IN ('paused', 'draft')))"
)

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
        "AND {may_work} FOR UPDATE OF t"
    ).replace("{may_work}", MAY_WORK_SQL),
}
GUARDED = "EXISTS (SELECT 1 FROM guard)"


class _PreparedCursor(ServerBindingCursor):
    """Binds parameters on the server and prepares each statement on first use."""

    def execute(self, query, params=None, **kwargs):
        return super().execute(query, params, prepare=True, **kwargs)


def loop_cursor():
    """A cursor for the loop's hot statements, prepared once per connection.

    They are long CTEs of a few fixed shapes: once prepared, PostgreSQL neither parses nor
    (after a few runs) plans them again, which was about half of its CPU per step. Everything
    else about the cursor is Django's (connection set-up, health check, query logging).
    """
    cursor = connection.cursor()
    if settings.DATABASE_PREPARED_STATEMENTS:
        cursor.cursor.close()
        cursor.cursor = _PreparedCursor(connection.connection)
    return cursor


def guard_part(kind: str, *, task: Task, worker: str) -> Part:
    return ("guard", GUARDS[kind], [task.pk, worker])


def step_write(**fields) -> Step | None:
    """Insert a step with its `before` and `after` statements in one; None if `when` was false.

    Takes the arguments of step_parts."""
    step, parts = step_parts(**fields)
    return step if parts_write(step, parts) else None


def parts_write(step: Step, parts: list[Part]) -> bool:
    """Run a step's statement (from step_parts); set the step's id and say if it was written."""
    sql = "WITH " + ", ".join(f"{name} AS ({body})" for name, body, _ in parts)
    sql += " SELECT id, created_at FROM step"
    with loop_cursor() as cursor:
        cursor.execute(sql, [value for _, _, part_params in parts for value in part_params])
        row = cursor.fetchone()
    if row is None:
        return False
    step.id, step.created_at = row
    return True


def step_parts(
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
) -> tuple[Step, list[Part]]:
    """A step not yet written (no id), and the parts of the statement that writes it.

    The INSERT is the part named "step" and returns (id, created_at).
    """
    # Serialised once: the same text is sent to the database and read back as the payload
    # the loop keeps (what a reload would give: dates and decimals as strings).
    payload_json = storable_dumps(payload, cls=DjangoJSONEncoder)
    step_sql = STEP_INSERT + (f" WHERE {when}" if when else "") + " RETURNING id, created_at"
    values = [task.pk, run.pk, seq, kind, payload_json, tokens_in, tokens_out, cost, latency_ms]
    step = Step(
        task=task,
        run=run,
        seq=seq,
        kind=kind,
        payload=json.loads(payload_json),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=cost,
        latency_ms=latency_ms,
    )
    return step, [*before, ("step", step_sql, values), *after]


def named_ctes(parts: list[Part], prefix: str) -> tuple[str, dict]:
    """Parts as "name AS (...)" text with named placeholders, to join a statement using them."""
    ctes, params = [], {}
    for name, body, values in parts:
        pieces = body.split("%s")
        if len(pieces) != len(values) + 1:
            raise ValueError(f"part {name!r}: {len(pieces) - 1} placeholders, {len(values)} values")
        text = pieces[0]
        for piece, value in zip(pieces[1:], values, strict=True):
            key = f"{prefix}{len(params)}"
            params[key] = value
            text += f"%({key})s{piece}"
        ctes.append(f"{name} AS ({text})")
    return ", ".join(ctes), params


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
        storable_dumps(payload, cls=DjangoJSONEncoder),
        tokens_in,
        tokens_out,
        cost,
        latency_ms,
    ]
