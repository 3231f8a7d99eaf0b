"""Budgets that fail closed: reserve a model call's worst case before making it, settle after.

Reservations are conditional UPDATEs, atomic in PostgreSQL, so two runs of one employee in
parallel can never jointly pass a ceiling. The task-row update also renews the worker's lease
and checks the employee may still act, so a turn costs two statements before its model call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.utils import timezone

from aiworkforce.llm import model_info, price_for
from aiworkforce.llm.capabilities import known_context_window
from aiworkforce.llm.pricing import MILLION
from employees.models import EmployeeStatus
from tasks.models import DailySpend, Task, TaskSource, TaskStatus
from tasks.settlement import settle, settle_write
from tasks.steps import MAY_WORK_SQL, Carry, loop_cursor, named_ctes

ACTING = (EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW)
MEASURABLE = (EmployeeStatus.PAUSED, EmployeeStatus.DRAFT)  # by an evaluation: MAY_WORK_SQL
# The money columns' precision: a reservation is rounded up to it, so what is added to a
# column is exactly what is later taken off it (no $0.000001 left reserved per call).
MONEY_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class Reservation:
    amount: Decimal
    day: date
    max_tokens: int
    # Names this reservation on the task row, so that it is settled once (tasks.settlement).
    id: str = ""


@dataclass(frozen=True)
class BudgetRefusal:
    # "task", "day" or "request" (the root of a delegated task's tree); "turn" only in raise
    # requests made before the per-turn ceiling limited a call's output alone.
    scope: str
    current: str
    needed: str
    message: str


@dataclass(frozen=True)
class NotOurs:
    """The turn cannot go on: the lease was lost, or the employee was paused or offboarded."""

    employee_status: str | None


def _task_limit(task: Task) -> Decimal:
    override = task.budget_overrides.get("task_cost")
    return Decimal(override) if override else task.employee.max_cost_per_task


def _turn_limit(task: Task) -> int:
    return int(task.budget_overrides.get("turn_tokens") or task.employee.max_tokens_per_turn)


@dataclass(frozen=True)
class Plan:
    """What one model call will reserve, before it is attempted."""

    amount: Decimal
    day: date
    max_tokens: int
    params: dict

    def reservation(self) -> Reservation:
        return Reservation(
            amount=self.amount, day=self.day, max_tokens=self.max_tokens, id=self.params["rsv_id"]
        )


@dataclass(frozen=True)
class CallLimits:
    """One model call's room: the window its prompt is fitted to, the tokens it may produce,
    and the most prompt tokens the endpoint can bill (None when its window is not known)."""

    window: int
    output_tokens: int
    billable_prompt: int | None


def call_limits(*, task: Task, model: str) -> CallLimits:
    """The window (the employee's setting, else the model's) and the per-turn output ceiling."""
    info = model_info(model)
    window = task.employee.context_window or info.context_window
    # The answer never takes more than half the window: the rest is for the prompt.
    output = max(1, min(_turn_limit(task), info.max_output, window // 2))
    return CallLimits(
        window=window, output_tokens=output, billable_prompt=known_context_window(model)
    )


def prompt_token_ceiling(messages: list[dict], tools_bytes: int, billable: int | None) -> int:
    """The most prompt tokens one call can be billed for.

    Byte-level tokenizers never make a token of less than one byte, whatever the language (a
    Japanese e-mail has about one token per character, not per three); and an endpoint whose
    window is known refuses a longer prompt rather than bill it.
    """
    size = tools_bytes
    for message in messages:
        size += _bytes(message.get("content") or "") + 8
        for call in message.get("tool_calls", ()):
            function = call["function"]
            size += _bytes(function["name"]) + _bytes(function.get("arguments") or "") + 16
    return min(size, billable) if billable else size


def _bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def budget_plan(
    *, task: Task, model: str, prompt_tokens: int, output_tokens: int, worker: str
) -> Plan:
    """The worst case of one call: every prompt token it may be billed for, and every output
    token (reasoning included) it may produce, rounded up to the cent's ten-thousandth."""
    employee = task.employee
    price_in, price_out, _ = price_for(model)
    amount = ((price_in * prompt_tokens + price_out * output_tokens) / MILLION).quantize(
        MONEY_PLACES, rounding=ROUND_CEILING
    )
    day = timezone.localdate(timezone=employee.tzinfo)
    params = {
        "rsv_task": task.pk,
        "rsv_worker": worker,
        "rsv_amount": amount,
        "rsv_task_limit": _task_limit(task),
        "rsv_employee": task.employee_id,
        "rsv_day": day,
        "rsv_day_limit": employee.max_cost_per_day,
        "rsv_lease": timezone.now() + timedelta(seconds=settings.TASK_LEASE_SECONDS),
        "rsv_root": task.root_id,
        "rsv_id": uuid.uuid4().hex[:16],
    }
    return Plan(amount=amount, day=day, max_tokens=output_tokens, params=params)


def budget_reserve(
    *,
    task: Task,
    model: str,
    prompt_tokens: int,
    output_tokens: int,
    worker: str,
    carry: Carry | None = None,
) -> Reservation | BudgetRefusal | NotOurs:
    """Reserve one call's worst case now, or say why not.

    `carry` is a step not yet written and the parts of its statement (see steps.step_parts):
    it is written by the same statement, under its own condition, whatever the reservation's
    outcome, and gets its id (None when its condition was false).
    """
    plan = budget_plan(
        task=task,
        model=model,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        worker=worker,
    )
    for attempt in range(2):
        with loop_cursor() as cursor:
            if carry is not None:
                # Order matters, and follows the data: the step (and its guard's row lock) is
                # read in FROM, before the reservation updates the task row (a row updated by
                # this statement could no longer be locked by the guard); the audit entry is
                # read by nothing, so it runs after the day row is locked (the audit chain
                # lock is always taken last, see aiworkforce.audit).
                carried_sql, carried_params = named_ctes(carry[1], "carry_")
                cursor.execute(
                    f"WITH {carried_sql}, {RESERVE_CTES} "  # noqa: S608 - built from constant SQL
                    "SELECT step.id, step.created_at, EXISTS (SELECT 1 FROM rsv_reserved) "
                    "FROM (SELECT 1) AS one LEFT JOIN step ON true",
                    {**carried_params, **plan.params},
                )
                step_id, created_at, reserved = cursor.fetchone()
                carry[0].id, carry[0].created_at = step_id, created_at
                carry = None  # written (or refused): never twice
            else:
                cursor.execute(
                    f"WITH {RESERVE_CTES} SELECT EXISTS (SELECT 1 FROM rsv_reserved)",  # noqa: S608 - constant SQL
                    plan.params,
                )
                reserved = cursor.fetchone()[0]
            if reserved or attempt:
                break
        # The first call of a day finds no spend row: make sure it exists, then try once more.
        # Whether this run created it or a parallel run did a moment ago makes no difference.
        DailySpend.objects.get_or_create(employee=task.employee, day=plan.day)
    if reserved:
        return plan.reservation()
    return _why_not(task, worker, plan.amount, plan.params["rsv_task_limit"], plan.day)


# The day row and the task row are reserved together or not at all. The day row's UPDATE
# re-checks its condition after any concurrent update (READ COMMITTED), which is what keeps
# parallel runs of one employee under the day's ceiling; the task row is only ever written by
# the worker holding its lease. A delegated task also reserves on its root request (rsv_root,
# NULL for a task that was not delegated): the root row is locked and re-checked the same way,
# so parallel children of one request never jointly pass the root's ceiling.
RESERVE_CTES = """
rsv_task AS (
    SELECT t.id FROM tasks_task t JOIN employees_employee e ON e.id = t.employee_id
    WHERE t.id = %(rsv_task)s AND t.status = 'running' AND t.lease_owner = %(rsv_worker)s
      AND {may_work}
      AND t.cost + t.reserved_cost + t.descendants_cost + %(rsv_amount)s <= %(rsv_task_limit)s
    FOR UPDATE OF t
), rsv_root AS (
    SELECT r.id FROM tasks_task r JOIN employees_employee re ON re.id = r.employee_id
    WHERE r.id = %(rsv_root)s AND EXISTS (SELECT 1 FROM rsv_task)
      AND r.cost + r.reserved_cost + r.descendants_cost + %(rsv_amount)s
          <= coalesce(nullif(r.budget_overrides->>'task_cost', '')::numeric, re.max_cost_per_task)
    FOR UPDATE OF r
), rsv_day AS (
    UPDATE tasks_dailyspend SET reserved = reserved + %(rsv_amount)s
    WHERE employee_id = %(rsv_employee)s AND day = %(rsv_day)s
      AND spent + reserved + %(rsv_amount)s <= coalesce(limit_override, %(rsv_day_limit)s)
      AND EXISTS (SELECT 1 FROM rsv_task)
      AND (%(rsv_root)s::bigint IS NULL OR EXISTS (SELECT 1 FROM rsv_root))
    RETURNING 1
), rsv_reserved AS (
    UPDATE tasks_task SET reserved_cost = reserved_cost + %(rsv_amount)s,
        reserved_day = %(rsv_day)s, reservation_id = %(rsv_id)s, lease_expires_at = %(rsv_lease)s
    WHERE id = %(rsv_task)s AND EXISTS (SELECT 1 FROM rsv_day)
    RETURNING 1
), rsv_root_reserved AS (
    UPDATE tasks_task SET descendants_cost = descendants_cost + %(rsv_amount)s
    WHERE id = %(rsv_root)s AND EXISTS (SELECT 1 FROM rsv_day)
    RETURNING 1
)""".replace("{may_work}", MAY_WORK_SQL)


def _why_not(task: Task, worker: str, amount: Decimal, task_limit: Decimal, day: date):
    row = (
        Task.objects.filter(pk=task.pk)
        .values(
            "status", "lease_owner", "cost", "reserved_cost", "descendants_cost", "employee__status"
        )
        .first()
    )
    if row is None or row["status"] != TaskStatus.RUNNING or row["lease_owner"] != worker:
        return NotOurs(employee_status=None)
    evaluating = task.source == TaskSource.EVALUATION and row["employee__status"] in MEASURABLE
    if row["employee__status"] not in ACTING and not evaluating:
        return NotOurs(employee_status=row["employee__status"])
    spent = row["cost"] + row["descendants_cost"]
    if spent + row["reserved_cost"] + amount > task_limit:
        delegated = " (with the tasks it delegated)" if row["descendants_cost"] else ""
        return BudgetRefusal(
            "task",
            str(task_limit),
            str((spent + amount).quantize(Decimal("0.0001"))),
            f"This task{delegated} has spent ${spent:.4f} of its ${task_limit:.2f} budget; the "
            f"next model call could cost up to ${amount:.4f}.",
        )
    if task.root_id:
        refusal = _root_refusal(task, amount)
        if refusal is not None:
            return refusal
    return _day_refusal(task.employee, day, amount)


def _root_refusal(task: Task, amount: Decimal) -> BudgetRefusal | None:
    """A delegated task stopped by the budget of the request at the top of its tree."""
    root = Task.objects.select_related("employee").get(pk=task.root_id)
    limit = _task_limit(root)
    spent = root.cost + root.descendants_cost
    if spent + root.reserved_cost + amount <= limit:
        return None
    return BudgetRefusal(
        "request",
        str(limit),
        str((spent + amount).quantize(Decimal("0.0001"))),
        f"The request this task is part of (#{root.pk} for @{root.employee.handle}) has spent "
        f"${spent:.4f} of its ${limit:.2f} budget, counting every delegated task; the next "
        f"model call could cost up to ${amount:.4f}.",
    )


def _day_refusal(employee, day: date, amount: Decimal) -> BudgetRefusal:
    spend = DailySpend.objects.get(employee=employee, day=day)
    limit = spend.limit_override if spend.limit_override is not None else employee.max_cost_per_day
    return BudgetRefusal(
        "day",
        str(limit),
        str((spend.spent + spend.reserved + amount).quantize(Decimal("0.0001"))),
        f"{employee.name} has spent ${spend.spent:.4f} of its ${limit:.2f} budget for "
        f"{day:%Y-%m-%d}; the next model call could cost up to ${amount:.4f}.",
    )


def budget_settle(
    *,
    task: Task,
    reservation: Reservation,
    actual: Decimal,
    tokens_in: int = 0,
    tokens_out: int = 0,
) -> None:
    """Replace a reservation by what the call cost, when no step carries the settlement."""
    settle_write(
        settle(
            task=task,
            reservation=reservation,
            cost=actual,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
    )


def budget_release(*, task: Task, reservation: Reservation) -> None:
    """Give back a reservation for a call that never completed."""
    budget_settle(task=task, reservation=reservation, actual=Decimal("0"))
