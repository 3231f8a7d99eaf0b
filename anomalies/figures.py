"""The anomaly rules' figures for every employee at once: one SQL statement per rule.

Hand-written (STYLE 6c) because it pays in benchmarks/anomalies.py: the rules run every minute
over the whole workforce, so each rule is one aggregate over all employees (never a query per
employee). Each statement returns only the employees its rule triggers for, with the figures.

Invariant: a rule counts only events after the employee's last status change (its resume), so
a trigger fires once and a resumed employee is never paused again for the same old window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection

from anomalies.models import DEFAULTS, Rule

# Employees the rules watch: those that act (shadow ones spend money and propose actions too).
WATCHED = ("active", "shadow")
_MICRO = Decimal("0.000001")  # the precision of a step's cost
# Work, not golden-task evaluations (they only propose, and repeat the same inputs on
# purpose); written as the (employee, finished_at) index's own condition, so that it serves.
WORK = "NOT (source = 'evaluation')"


@dataclass(frozen=True)
class Trigger:
    """One rule's verdict on one employee, with what it measured."""

    rule: str
    employee_id: int
    status_changed_at: datetime | None
    figures: dict = field(default_factory=dict)


def _params(rule: str, window: str = "NULL::interval") -> tuple[str, dict]:
    """The watched employees with this rule on, its effective parameters (an override's
    column over the default's over the built-in one) and `since`: the later of the window's
    start and the employee's last status change."""
    defaults = DEFAULTS[rule]
    column = {
        "threshold": "integer",
        "sample": "integer",
        "multiplier": "numeric",
        "floor": "numeric",
        "window_minutes": "integer",
    }
    picks = ",\n".join(
        f"COALESCE(o.{name}, d.{name}, %(default_{name})s::{column[name]}) AS {name}"
        for name in column
    )
    # Only our constants are formatted in; the values go as parameters.
    sql = f"""
    SELECT e.id AS employee_id, e.status_changed_at,
           GREATEST(%(now)s::timestamptz - {window},
                    COALESCE(e.status_changed_at, '-infinity'::timestamptz)) AS since,
           {picks}
    FROM employees_employee e
    LEFT JOIN anomalies_rulesettings d ON d.rule = %(rule)s
    LEFT JOIN anomalies_employeeruleoverride o ON o.employee_id = e.id AND o.rule = %(rule)s
    WHERE e.status IN {WATCHED!r}
      AND COALESCE(o.enabled, d.enabled, TRUE)
    """  # noqa: S608
    return sql, {"rule": rule, **{f"default_{name}": defaults.get(name) for name in column}}


SPEND_SPIKE = """
WITH p AS MATERIALIZED ({params}),
recent AS (
    SELECT t.employee_id, SUM(s.cost) AS spent
    FROM tasks_step s
    JOIN tasks_task t ON t.id = s.task_id
    JOIN p ON p.employee_id = t.employee_id
    WHERE s.created_at >= %(now)s::timestamptz - interval '1 hour'
      AND s.created_at > p.since AND s.cost > 0 AND {work}
    GROUP BY t.employee_id
    HAVING SUM(s.cost) > MIN(p.floor)
),
hourly AS (
    -- Only for employees already over their floor: the usual pass reads the last hour alone.
    -- The usual hours are read from the tasks (a finished task's cost in the hour it finished,
    -- an index-only range of the covering (employee, finished_at) index per employee), not
    -- from a week of steps.
    SELECT r.employee_id, h.spent
    FROM recent r CROSS JOIN LATERAL (
        SELECT SUM(t.cost) AS spent
        FROM tasks_task t
        WHERE t.employee_id = r.employee_id
          AND t.finished_at >= %(now)s::timestamptz - interval '7 days 1 hour'
          AND t.finished_at < %(now)s::timestamptz - interval '1 hour'
          AND t.cost > 0 AND {work}
        GROUP BY date_trunc('hour', t.finished_at)
    ) h
),
usual AS (
    SELECT employee_id, percentile_cont(0.95) WITHIN GROUP (ORDER BY spent) AS p95
    FROM hourly GROUP BY employee_id
)
SELECT r.employee_id, p.status_changed_at, r.spent, u.p95, p.multiplier, p.floor
FROM recent r
JOIN p ON p.employee_id = r.employee_id
LEFT JOIN usual u ON u.employee_id = r.employee_id
WHERE r.spent > p.multiplier * COALESCE(u.p95, 0)
"""

# The last N outcomes, newest first: finished tasks that were not cancelled (a cancelled one
# is neither good nor bad) and tasks waiting on an escalation. `status <> 'cancelled'` rather
# than `IN ('done', 'failed')` on purpose: it keeps the planner on a backward walk of the
# covering (employee, finished_at) index, stopping after N rows, instead of sorting every
# done task of the employee found through the (employee, status) index.
ERROR_STREAK = """
WITH p AS MATERIALIZED ({params})
SELECT p.employee_id, p.status_changed_at, p.threshold,
       COUNT(*) FILTER (WHERE x.status = 'failed') AS failed,
       COUNT(*) FILTER (WHERE x.status = 'waiting_escalation') AS escalated
FROM p CROSS JOIN LATERAL (
    SELECT u.status FROM (
        (SELECT status, finished_at AS at FROM tasks_task
         WHERE employee_id = p.employee_id AND finished_at > p.since
           AND status <> 'cancelled' AND {work}
         ORDER BY finished_at DESC LIMIT p.threshold)
        UNION ALL
        (SELECT status, updated_at AS at FROM tasks_task
         WHERE employee_id = p.employee_id AND status = 'waiting_escalation'
           AND updated_at > p.since AND {work}
         ORDER BY updated_at DESC LIMIT p.threshold)
    ) u ORDER BY u.at DESC LIMIT p.threshold
) x
GROUP BY p.employee_id, p.status_changed_at, p.threshold
HAVING COUNT(*) = p.threshold AND bool_and(x.status IN ('failed', 'waiting_escalation'))
"""

# Proposals made within the window (and after the last status change) that a person decided
# (not expired or cancelled ones), newest decision first; read from the (status, created_at)
# index.
REJECTION_STREAK = """
WITH p AS MATERIALIZED ({params}),
decided AS (
    SELECT a.employee_id, a.status,
           row_number() OVER (PARTITION BY a.employee_id ORDER BY a.decided_at DESC) AS n
    FROM approvals_approvalrequest a JOIN p ON p.employee_id = a.employee_id
    WHERE a.status IN ('approved', 'rejected') AND a.kind = 'tool_call'
      AND a.decided_by_id IS NOT NULL
      AND a.created_at >= (SELECT MIN(since) FROM p) AND a.created_at > p.since
)
SELECT p.employee_id, p.status_changed_at, p.threshold, p.sample, p.window_minutes,
       COUNT(*) FILTER (WHERE d.status = 'rejected') AS rejected, COUNT(*) AS decided
FROM decided d JOIN p ON p.employee_id = d.employee_id
WHERE d.n <= p.sample
GROUP BY p.employee_id, p.status_changed_at, p.threshold, p.sample, p.window_minutes
HAVING COUNT(*) FILTER (WHERE d.status = 'rejected') >= p.threshold
"""

# A tool call is recorded as "started" before it acts and again with its outcome: count the
# outcomes (done, denied, failed, waiting for approval), once per call.
TOOL_SURGE = """
WITH p AS MATERIALIZED ({params}),
calls AS (
    SELECT t.employee_id, s.payload->>'name' AS tool, COUNT(*) AS calls
    FROM tasks_step s
    JOIN tasks_task t ON t.id = s.task_id
    JOIN p ON p.employee_id = t.employee_id
    WHERE s.created_at >= %(now)s::timestamptz - interval '1 hour'
      AND s.created_at > p.since AND s.kind = 'tool_call'
      AND COALESCE(s.payload->>'status', '') <> 'started' AND {work}
    GROUP BY t.employee_id, s.payload->>'name'
)
SELECT DISTINCT ON (c.employee_id) c.employee_id, p.status_changed_at, c.tool, c.calls,
       p.threshold
FROM calls c JOIN p ON p.employee_id = c.employee_id
WHERE c.calls > p.threshold
ORDER BY c.employee_id, c.calls DESC
"""

WAKE_LOOP = """
WITH p AS MATERIALIZED ({params})
SELECT DISTINCT ON (t.employee_id) t.employee_id, p.status_changed_at, COUNT(*) AS created,
       MIN(t.input) AS text, p.threshold, p.window_minutes
FROM tasks_task t JOIN p ON p.employee_id = t.employee_id
WHERE t.created_at >= (SELECT MIN(since) FROM p) AND t.created_at > p.since AND {work}
GROUP BY t.employee_id, p.status_changed_at, md5(t.input), p.threshold, p.window_minutes
HAVING COUNT(*) > p.threshold
ORDER BY t.employee_id, COUNT(*) DESC
"""

_IN_WINDOW = (
    "COALESCE(o.window_minutes, d.window_minutes, %(default_window_minutes)s::integer) "
    "* interval '1 minute'"
)
_STATEMENTS = (
    (Rule.SPEND_SPIKE, SPEND_SPIKE, "interval '1 hour'"),
    (Rule.ERROR_STREAK, ERROR_STREAK, "NULL::interval"),
    (Rule.REJECTION_STREAK, REJECTION_STREAK, _IN_WINDOW),
    (Rule.TOOL_SURGE, TOOL_SURGE, "interval '1 hour'"),
    (Rule.WAKE_LOOP, WAKE_LOOP, _IN_WINDOW),
)


def _figures(rule: str, row: dict) -> dict:
    if rule == Rule.SPEND_SPIKE:
        p95 = row["p95"]
        return {
            "spent": Decimal(row["spent"]).quantize(_MICRO),
            "p95": None if p95 is None else Decimal(str(p95)).quantize(_MICRO),
            "multiplier": row["multiplier"],
            "floor": row["floor"],
        }
    if rule == Rule.ERROR_STREAK:
        return {k: row[k] for k in ("threshold", "failed", "escalated")}
    if rule == Rule.REJECTION_STREAK:
        return {k: row[k] for k in ("threshold", "sample", "rejected", "decided")}
    if rule == Rule.TOOL_SURGE:
        return {k: row[k] for k in ("tool", "calls", "threshold")}
    return {
        "created": row["created"],
        "text": (row["text"] or "")[:120],
        "threshold": row["threshold"],
        "window_minutes": row["window_minutes"],
    }


def anomaly_triggers(*, now: datetime) -> list[Trigger]:
    """Every rule's triggers over all watched employees, in rule order (five statements)."""
    triggers = []
    with connection.cursor() as cursor:
        for rule, statement, window in _STATEMENTS:
            params_sql, params = _params(rule, window)
            sql = statement.format(params=params_sql, work=WORK)
            cursor.execute(sql, {**params, "now": now})
            names = [c.name for c in cursor.description]
            for values in cursor.fetchall():
                row = dict(zip(names, values, strict=True))
                triggers.append(
                    Trigger(
                        rule=rule,
                        employee_id=row["employee_id"],
                        status_changed_at=row["status_changed_at"],
                        figures=_figures(rule, row),
                    )
                )
    return triggers
