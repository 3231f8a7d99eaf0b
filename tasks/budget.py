"""Budgets that fail closed: reserve a model call's worst case before making it, settle after.

Reservations are conditional UPDATEs, atomic in PostgreSQL, so two runs of one employee in
parallel can never jointly pass a ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from aiworkforce.llm import price_for
from aiworkforce.llm.pricing import MILLION
from tasks.models import DailySpend, Task


@dataclass(frozen=True)
class Reservation:
    amount: Decimal
    day: object
    max_tokens: int


@dataclass(frozen=True)
class BudgetRefusal:
    scope: str  # "turn", "task" or "day"
    current: str
    needed: str
    message: str


def _task_limit(task: Task) -> Decimal:
    override = task.budget_overrides.get("task_cost")
    return Decimal(override) if override else task.employee.max_cost_per_task


def _turn_limit(task: Task) -> int:
    return int(task.budget_overrides.get("turn_tokens") or task.employee.max_tokens_per_turn)


def budget_reserve(*, task: Task, model: str, prompt_tokens: int) -> Reservation | BudgetRefusal:
    """Set aside the worst case of one call: prompt estimate plus all the tokens it may produce."""
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
        DailySpend.objects.get_or_create(employee=employee, day=day)
        task_ok = Task.objects.filter(
            pk=task.pk, cost__lte=task_limit - F("reserved_cost") - amount
        ).update(reserved_cost=F("reserved_cost") + amount)
        if not task_ok:
            task.refresh_from_db(fields=["cost", "reserved_cost"])
            return BudgetRefusal(
                "task",
                str(task_limit),
                str((task.cost + amount).quantize(Decimal("0.0001"))),
                f"This task has spent ${task.cost:.4f} of its ${task_limit:.2f} budget; the next "
                f"model call could cost up to ${amount:.4f}.",
            )
        spend = DailySpend.objects.select_for_update().get(employee=employee, day=day)
        day_limit = (
            spend.limit_override if spend.limit_override is not None else employee.max_cost_per_day
        )
        if spend.spent + spend.reserved + amount > day_limit:
            transaction.set_rollback(True)
            return BudgetRefusal(
                "day",
                str(day_limit),
                str((spend.spent + spend.reserved + amount).quantize(Decimal("0.0001"))),
                f"{employee.name} has spent ${spend.spent:.4f} of its ${day_limit:.2f} budget for "
                f"{day:%Y-%m-%d}; the next model call could cost up to ${amount:.4f}.",
            )
        DailySpend.objects.filter(pk=spend.pk).update(reserved=F("reserved") + amount)
    return Reservation(amount=amount, day=day, max_tokens=max_tokens)


def budget_settle(*, task: Task, reservation: Reservation, actual: Decimal) -> None:
    """Replace a reservation by what the call actually cost (inside the step's transaction)."""
    Task.objects.filter(pk=task.pk).update(
        reserved_cost=F("reserved_cost") - reservation.amount, cost=F("cost") + actual
    )
    DailySpend.objects.filter(employee=task.employee_id, day=reservation.day).update(
        reserved=F("reserved") - reservation.amount, spent=F("spent") + actual
    )


def budget_release(*, task: Task, reservation: Reservation) -> None:
    """Give back a reservation for a call that never completed."""
    budget_settle(task=task, reservation=reservation, actual=Decimal("0"))
