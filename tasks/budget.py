"""Budgets that fail closed: reserve a model call's worst case before making it, settle after.

Reservations are conditional UPDATEs, atomic in PostgreSQL, so two runs of one employee in
parallel can never jointly pass a ceiling. The task-row update also renews the worker's lease
and checks the employee may still act, so a turn costs two statements before its model call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from aiworkforce.llm import price_for
from aiworkforce.llm.pricing import MILLION
from employees.models import EmployeeStatus
from tasks.models import DailySpend, Task, TaskStatus

ACTING = (EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW)


@dataclass(frozen=True)
class Reservation:
    amount: Decimal
    day: date
    max_tokens: int


@dataclass(frozen=True)
class BudgetRefusal:
    scope: str  # "turn", "task" or "day"
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
        return Reservation(amount=self.amount, day=self.day, max_tokens=self.max_tokens)


def budget_plan(*, task: Task, model: str, prompt_tokens: int, worker: str) -> Plan | BudgetRefusal:
    """The worst case of one call: the prompt estimate plus every token it may produce."""
    employee = task.employee
    turn_limit = _turn_limit(task)
    max_tokens = min(turn_limit - prompt_tokens, 4096)
    if max_tokens < 64:
        return BudgetRefusal(
            "turn",
            str(turn_limit),
            str(prompt_tokens + 1024),
            f"The next model call needs about {prompt_tokens} prompt tokens, over the per-turn "
            f"budget of {turn_limit} tokens.",
        )
    price_in, price_out, _ = price_for(model)
    amount = (price_in * prompt_tokens + price_out * max_tokens) / MILLION
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
    }
    return Plan(amount=amount, day=day, max_tokens=max_tokens, params=params)


def budget_reserve(
    *, task: Task, model: str, prompt_tokens: int, worker: str
) -> Reservation | BudgetRefusal | NotOurs:
    """Reserve one call's worst case now, or say why not."""
    plan = budget_plan(task=task, model=model, prompt_tokens=prompt_tokens, worker=worker)
    if isinstance(plan, BudgetRefusal):
        return plan
    for attempt in range(2):
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH {RESERVE_CTES} SELECT EXISTS (SELECT 1 FROM rsv_reserved)",  # noqa: S608 - constant SQL
                plan.params,
            )
            if cursor.fetchone()[0]:
                return plan.reservation()
        # The first call of a day finds no spend row: create it, then try once more.
        created = DailySpend.objects.get_or_create(employee=task.employee, day=plan.day)[1]
        if attempt == 0 and not created:
            break
    return _why_not(task, worker, plan.amount, plan.params["rsv_task_limit"], plan.day)


# The day row and the task row are reserved together or not at all. The day row's UPDATE
# re-checks its condition after any concurrent update (READ COMMITTED), which is what keeps
# parallel runs of one employee under the day's ceiling; the task row is only ever written by
# the worker holding its lease.
RESERVE_CTES = """
rsv_task AS (
    SELECT t.id FROM tasks_task t JOIN employees_employee e ON e.id = t.employee_id
    WHERE t.id = %(rsv_task)s AND t.status = 'running' AND t.lease_owner = %(rsv_worker)s
      AND e.status IN ('active', 'shadow')
      AND t.cost + t.reserved_cost + %(rsv_amount)s <= %(rsv_task_limit)s
    FOR UPDATE OF t
), rsv_day AS (
    UPDATE tasks_dailyspend SET reserved = reserved + %(rsv_amount)s
    WHERE employee_id = %(rsv_employee)s AND day = %(rsv_day)s
      AND spent + reserved + %(rsv_amount)s <= coalesce(limit_override, %(rsv_day_limit)s)
      AND EXISTS (SELECT 1 FROM rsv_task)
    RETURNING 1
), rsv_reserved AS (
    UPDATE tasks_task SET reserved_cost = reserved_cost + %(rsv_amount)s,
        lease_expires_at = %(rsv_lease)s
    WHERE id = %(rsv_task)s AND EXISTS (SELECT 1 FROM rsv_day)
    RETURNING 1
)"""


def _why_not(task: Task, worker: str, amount: Decimal, task_limit: Decimal, day: date):
    row = (
        Task.objects.filter(pk=task.pk)
        .values("status", "lease_owner", "cost", "reserved_cost", "employee__status")
        .first()
    )
    if row is None or row["status"] != TaskStatus.RUNNING or row["lease_owner"] != worker:
        return NotOurs(employee_status=None)
    if row["employee__status"] not in ACTING:
        return NotOurs(employee_status=row["employee__status"])
    if row["cost"] + row["reserved_cost"] + amount > task_limit:
        return BudgetRefusal(
            "task",
            str(task_limit),
            str((row["cost"] + amount).quantize(Decimal("0.0001"))),
            f"This task has spent ${row['cost']:.4f} of its ${task_limit:.2f} budget; the next "
            f"model call could cost up to ${amount:.4f}.",
        )
    return _day_refusal(task.employee, day, amount)


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
    """Replace a reservation by what the call cost (inside the step's transaction)."""
    # GREATEST: after a reclaim the new owner has already zeroed this reservation.
    Task.objects.filter(pk=task.pk).update(
        reserved_cost=Greatest(F("reserved_cost") - reservation.amount, Value(Decimal("0"))),
        cost=F("cost") + actual,
        tokens_in=F("tokens_in") + tokens_in,
        tokens_out=F("tokens_out") + tokens_out,
    )
    DailySpend.objects.filter(employee=task.employee_id, day=reservation.day).update(
        reserved=Greatest(F("reserved") - reservation.amount, Value(Decimal("0"))),
        spent=F("spent") + actual,
    )


def budget_release(*, task: Task, reservation: Reservation) -> None:
    """Give back a reservation for a call that never completed."""
    budget_settle(task=task, reservation=reservation, actual=Decimal("0"))
