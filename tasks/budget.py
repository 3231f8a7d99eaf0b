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
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
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


def budget_reserve(
    *, task: Task, model: str, prompt_tokens: int, worker: str
) -> Reservation | BudgetRefusal | NotOurs:
    """Set aside the worst case of one call: the prompt estimate plus every token it may produce."""
    employee = task.employee
    turn_limit = _turn_limit(task)
    max_tokens = min(turn_limit - prompt_tokens, 16_384)
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
    task_limit = _task_limit(task)
    with transaction.atomic():
        reserved = Task.objects.filter(
            pk=task.pk,
            status=TaskStatus.RUNNING,
            lease_owner=worker,
            employee__status__in=ACTING,
            cost__lte=task_limit - F("reserved_cost") - amount,
        ).update(
            reserved_cost=F("reserved_cost") + amount,
            lease_expires_at=timezone.now() + timedelta(seconds=settings.TASK_LEASE_SECONDS),
        )
        if not reserved:
            return _why_not(task, worker, amount, task_limit)
        day_ok = _reserve_day(employee, day, amount)
        if not day_ok:
            transaction.set_rollback(True)  # give back the task's part too
    if not day_ok:
        return _day_refusal(employee, day, amount)
    return Reservation(amount=amount, day=day, max_tokens=max_tokens)


def _reserve_day(employee, day: date, amount: Decimal) -> bool:
    def attempt() -> int:
        return DailySpend.objects.filter(
            employee=employee,
            day=day,
            spent__lte=Coalesce(F("limit_override"), Value(employee.max_cost_per_day))
            - F("reserved")
            - amount,
        ).update(reserved=F("reserved") + amount)

    if attempt():
        return True
    # The first call of the day creates the row; then try once more.
    _, created = DailySpend.objects.get_or_create(employee=employee, day=day)
    return bool(created and attempt())


def _why_not(task: Task, worker: str, amount: Decimal, task_limit: Decimal):
    row = (
        Task.objects.filter(pk=task.pk)
        .values("status", "lease_owner", "cost", "employee__status")
        .first()
    )
    if row is None or row["status"] != TaskStatus.RUNNING or row["lease_owner"] != worker:
        return NotOurs(employee_status=None)
    if row["employee__status"] not in ACTING:
        return NotOurs(employee_status=row["employee__status"])
    return BudgetRefusal(
        "task",
        str(task_limit),
        str((row["cost"] + amount).quantize(Decimal("0.0001"))),
        f"This task has spent ${row['cost']:.4f} of its ${task_limit:.2f} budget; the next "
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
    """Replace a reservation by what the call cost (inside the step's transaction)."""
    Task.objects.filter(pk=task.pk).update(
        reserved_cost=F("reserved_cost") - reservation.amount,
        cost=F("cost") + actual,
        tokens_in=F("tokens_in") + tokens_in,
        tokens_out=F("tokens_out") + tokens_out,
    )
    DailySpend.objects.filter(employee=task.employee_id, day=reservation.day).update(
        reserved=F("reserved") - reservation.amount, spent=F("spent") + actual
    )


def budget_release(*, task: Task, reservation: Reservation) -> None:
    """Give back a reservation for a call that never completed."""
    budget_settle(task=task, reservation=reservation, actual=Decimal("0"))
