"""Settling a model call: what it cost replaces what was reserved for it.

Invariant (money): a reservation is taken off exactly once — on the task, on the day it was
reserved for, and on the root request of a delegated task — by whichever statement settles it
first; a later settlement (after a reclaim charged it as spent) adds only what the call cost
beyond the charge. Every settlement of a call is built by `settle`; the one other charge, of a
dead worker's reservation, is part of the claim statement that takes its task (tasks.claims).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from aiworkforce.storable import storable_copy
from tasks.models import Task
from tasks.steps import Part, loop_cursor

# What the task row's settling CTE returns: "mine" while the row named this reservation, and
# "again" when it was settled already (the day and root rows are then left alone).
MINE = "(SELECT mine FROM settle_task)"


@dataclass(frozen=True)
class Release:
    """A final answer also releases the task, in the same UPDATE of its row (a statement may
    update a row only once), and only while this worker holds it."""

    worker: str
    status: str
    result: str
    reason: str = ""


def settle(
    *,
    task: Task,
    reservation,
    cost: Decimal,
    tokens_in: int = 0,
    tokens_out: int = 0,
    release: Release | None = None,
) -> list[Part]:
    """The statement parts that settle `reservation` at `cost`: task, day, and root rows.

    With `release`, nothing is settled unless this worker still holds the task: the caller
    settles again without it (adding only an excess) when the task was taken away meanwhile.
    """
    reserved, rid = reservation.amount, reservation.id
    settled = f"{rid}!"
    sets, params, lease = "", [], ""
    if release is not None:
        sets = (
            "status = %s, status_reason = %s, result = %s, lease_owner = '', "
            "lease_expires_at = NULL, finished_at = now(), updated_at = now(), "
        )
        params = [release.status, release.reason[:500], storable_copy(release.result)]
        lease = " AND t.status = 'running' AND t.lease_owner = %s"
    # The row as it was, locked (RETURNING old.* would need PostgreSQL 18): "mine" while it
    # still names this reservation, which the UPDATE then marks settled (rid + "!"); "again"
    # when it was settled already. The day and root rows read which case it was.
    prev_sql = "SELECT reservation_id FROM tasks_task WHERE id = %s FOR UPDATE"
    task_sql = (
        f"UPDATE tasks_task t SET {sets}"  # noqa: S608 - fixed fragments
        "reserved_cost = CASE WHEN p.reservation_id = %s "
        "THEN GREATEST(t.reserved_cost - %s, 0) ELSE t.reserved_cost END, "
        "cost = t.cost + CASE WHEN p.reservation_id = %s THEN %s "
        "WHEN p.reservation_id = %s THEN 0 ELSE GREATEST(%s - %s, 0) END, "
        "reservation_id = CASE WHEN p.reservation_id = %s THEN %s ELSE t.reservation_id END, "
        "tokens_in = t.tokens_in + CASE WHEN p.reservation_id = %s THEN 0 ELSE %s END, "
        "tokens_out = t.tokens_out + CASE WHEN p.reservation_id = %s THEN 0 ELSE %s END "
        f"FROM settle_prev p WHERE t.id = %s{lease} "
        "RETURNING p.reservation_id = %s AS mine, p.reservation_id = %s AS again"
    )
    task_params = [
        *params,
        *(rid, reserved),
        *(rid, cost, settled, cost, reserved),
        *(rid, settled),
        *(settled, tokens_in, settled, tokens_out),
        task.pk,
        *([release.worker] if release is not None else []),
        *(rid, settled),
    ]
    # No row (the task is not ours to release): NOT NULL is not true, so nothing else moves.
    not_again = "NOT (SELECT again FROM settle_task)"
    parts: list[Part] = [
        ("settle_prev", prev_sql, [task.pk]),
        ("settle_task", task_sql, task_params),
        (
            "settle_day",
            f"UPDATE tasks_dailyspend SET "  # noqa: S608 - fixed fragments
            f"reserved = CASE WHEN {MINE} THEN GREATEST(reserved - %s, 0) ELSE reserved END, "
            f"spent = spent + CASE WHEN {MINE} THEN %s ELSE GREATEST(%s - %s, 0) END "
            f"WHERE employee_id = %s AND day = %s AND {not_again} RETURNING 1",
            [reserved, cost, cost, reserved, task.employee_id, reservation.day],
        ),
    ]
    if task.root_id:
        parts.append(
            (
                "settle_root",
                f"UPDATE tasks_task SET descendants_cost = CASE WHEN {MINE} "  # noqa: S608
                "THEN GREATEST(descendants_cost - %s, 0) + %s "
                "ELSE descendants_cost + GREATEST(%s - %s, 0) END "
                f"WHERE id = %s AND {not_again}",
                [reserved, cost, cost, reserved, task.root_id],
            )
        )
    return parts


def settle_write(parts: list[Part]) -> None:
    """Run `settle`'s parts on their own, as one statement."""
    sql = "WITH " + ", ".join(f"{name} AS ({body})" for name, body, _ in parts) + " SELECT 1"
    with loop_cursor() as cursor:
        cursor.execute(sql, [value for _, _, part_params in parts for value in part_params])
