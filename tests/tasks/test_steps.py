"""The loop's statements: one per step, guarded (tasks.steps), settled once (tasks.settlement)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aiworkforce.audit import Actor, audit_insert_sql
from aiworkforce.models import AuditEntry
from employees.models import Employee, EmployeeStatus
from tasks import budget
from tasks.claims import task_claim
from tasks.models import DailySpend, Run, Step, StepKind, Task, TaskStatus
from tasks.settlement import Release, settle, settle_write
from tasks.steps import (
    GUARDED,
    guard_part,
    named_ctes,
    parts_write,
    step_parts,
    step_write,
)
from tests.factories import assigned_task

pytestmark = pytest.mark.django_db

NOTED = "task.step_noted"  # the audit action the tests' guarded parts write


def _claimed(employee, worker: str = "w1", **kwargs) -> tuple[Task, Run]:
    claim = task_claim(task_id=assigned_task(employee, **kwargs).pk, worker=worker)
    assert claim is not None
    return claim.task, claim.run


def _reserve(task: Task, worker: str = "w1") -> budget.Reservation:
    task = Task.objects.select_related("employee").get(pk=task.pk)
    reservation = budget.budget_reserve(
        task=task, model="gpt-4o-mini", prompt_tokens=2000, output_tokens=4000, worker=worker
    )
    assert isinstance(reservation, budget.Reservation)
    return reservation


def _guarded_note(task: Task, run: Run, guard: str, seq: int = 1) -> tuple[Step, list]:
    """A note step guarded by `guard`, with an audit entry written only if the step is."""
    audit_sql, audit_params = audit_insert_sql(
        action=NOTED,
        actor=Actor.for_employee(task.employee),
        subject=task,
        data={"seq": seq},
        when=GUARDED,
    )
    return step_parts(
        task=task,
        run=run,
        seq=seq,
        kind=StepKind.NOTE,
        payload={"paid": Decimal("1.50"), "on": date(2026, 1, 2)},
        tokens_in=7,
        tokens_out=3,
        cost=Decimal("0.000123"),
        latency_ms=40,
        before=[guard_part(guard, task=task, worker="w1")],
        after=[("audit", audit_sql, audit_params)],
        when=GUARDED,
    )


def _noted(task: Task) -> int:
    return AuditEntry.objects.filter(action=NOTED, subject_id=str(task.pk)).count()


def _money(task: Task) -> tuple:
    row = Task.objects.get(pk=task.pk)
    return row.cost, row.reserved_cost, row.reservation_id


def _day(task: Task) -> tuple[Decimal, Decimal]:
    spend = DailySpend.objects.get(employee_id=task.employee_id)
    return spend.spent, spend.reserved


# --- a step and what commits with it ------------------------------------------------------------


def test_a_step_and_its_audit_entry_are_written_by_one_statement(clerk):
    task, run = _claimed(clerk)
    step, parts = _guarded_note(task, run, "owned")
    # The payload kept is what a reload gives: dates and decimals as strings.
    assert step.id is None and step.payload == {"paid": "1.50", "on": "2026-01-02"}

    with CaptureQueriesContext(connection) as queries:
        assert parts_write(step, parts)

    assert len(queries) == 1
    row = Step.objects.get(pk=step.id)
    assert (row.task_id, row.run_id, row.seq, row.kind) == (task.pk, run.pk, 1, StepKind.NOTE)
    assert row.payload == {"paid": "1.50", "on": "2026-01-02"}
    assert (row.tokens_in, row.tokens_out, row.cost, row.latency_ms) == (
        7,
        3,
        Decimal("0.000123"),
        40,
    )
    assert row.created_at == step.created_at
    assert _noted(task) == 1


@pytest.mark.parametrize("taken", ["reclaimed", "cancelled"])
def test_a_task_no_longer_this_workers_gets_neither_the_step_nor_its_audit_entry(clerk, taken):
    task, run = _claimed(clerk)
    if taken == "reclaimed":
        Task.objects.filter(pk=task.pk).update(lease_owner="w2")
    else:
        Task.objects.filter(pk=task.pk).update(status=TaskStatus.CANCELLED)
    step, parts = _guarded_note(task, run, "owned")

    assert not parts_write(step, parts)

    assert step.id is None
    assert not Step.objects.filter(task=task).exists()
    assert _noted(task) == 0


def test_a_paused_employee_cannot_act_but_its_task_can_still_record(clerk):
    task, run = _claimed(clerk)
    Employee.objects.filter(pk=clerk.pk).update(status=EmployeeStatus.PAUSED)

    acting, parts = _guarded_note(task, run, "acting")
    assert not parts_write(acting, parts)
    owned, parts = _guarded_note(task, run, "owned")
    assert parts_write(owned, parts)

    assert list(Step.objects.filter(task=task).values_list("pk", flat=True)) == [owned.id]
    assert _noted(task) == 1


def test_a_settlement_carried_by_a_refused_step_is_still_made(clerk):
    """A model call cost money whether or not its step can be written (see Turn.record)."""
    task, run = _claimed(clerk)
    reservation = _reserve(task)
    Task.objects.filter(pk=task.pk).update(lease_owner="w2")
    settlement = settle(task=task, reservation=reservation, cost=Decimal("0.0004"))
    step, parts = step_parts(
        task=task,
        run=run,
        seq=1,
        kind=StepKind.LLM_CALL,
        payload={},
        before=[guard_part("owned", task=task, worker="w1")],
        after=settlement,
        when=GUARDED,
    )

    assert not parts_write(step, parts)

    assert not Step.objects.filter(task=task).exists()
    assert _money(task) == (Decimal("0.0004"), 0, f"{reservation.id}!")
    assert _day(task) == (Decimal("0.0004"), 0)


# --- settling a reservation ---------------------------------------------------------------------


def test_a_reservation_is_settled_once_by_its_id(clerk):
    task, _run = _claimed(clerk)
    reservation = _reserve(task)
    assert _money(task) == (0, reservation.amount, reservation.id)
    other, _run = _claimed(clerk, worker="w2")  # the same employee's day holds its reservation
    pending = _reserve(other, worker="w2")
    assert _day(task) == (0, reservation.amount + pending.amount)
    cost = Decimal("0.000450")
    settlement = settle(
        task=task, reservation=reservation, cost=cost, tokens_in=1000, tokens_out=500
    )

    settle_write(settlement)
    assert _money(task) == (cost, 0, f"{reservation.id}!")
    assert _day(task) == (cost, pending.amount)
    # Settled again (tasks.loop settles an answered call when anything raises after its step
    # was written): nothing moves, on the task or on the day the other task shares.
    settle_write(settlement)

    assert _money(task) == (cost, 0, f"{reservation.id}!")
    assert _day(task) == (cost, pending.amount)
    row = Task.objects.get(pk=task.pk)
    assert (row.tokens_in, row.tokens_out) == (1000, 500)


def test_a_late_settlement_after_a_reclaim_adds_only_what_the_call_cost_beyond_it(clerk):
    task, _run = _claimed(clerk, worker="slow")
    slow = _reserve(task, worker="slow")
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert task_claim(task_id=task.pk, worker="fast") is not None  # charges `slow` as spent
    fast = _reserve(task, worker="fast")
    excess = Decimal("0.000500")

    settle_write(settle(task=task, reservation=slow, cost=slow.amount + excess))

    # The fast worker's reservation is untouched; only the excess is added to what was charged.
    assert _money(task) == (slow.amount + excess, fast.amount, fast.id)
    assert _day(task) == (slow.amount + excess, fast.amount)


def test_a_delegated_tasks_settlement_moves_its_roots_share_once(clerk):
    root = assigned_task(clerk)
    child, _run = _claimed(clerk, parent=root)
    reservation = _reserve(child)
    sibling, _run = _claimed(clerk, worker="w2", parent=root)
    pending = _reserve(sibling, worker="w2")
    assert Task.objects.get(pk=root.pk).descendants_cost == reservation.amount + pending.amount
    cost = Decimal("0.000100")
    settlement = settle(task=child, reservation=reservation, cost=cost)

    settle_write(settlement)
    assert Task.objects.get(pk=root.pk).descendants_cost == cost + pending.amount
    settle_write(settlement)

    root.refresh_from_db()
    assert (root.descendants_cost, root.cost, root.reserved_cost) == (cost + pending.amount, 0, 0)


# --- a final answer: release, settle, and the root's share, in one statement --------------------


def _final(task: Task, run: Run, reservation: budget.Reservation, cost: Decimal) -> Step | None:
    """The shape of tasks.loop's final write, without its audit entry and episode."""
    settled = settle(
        task=task,
        reservation=reservation,
        cost=cost,
        tokens_in=10,
        tokens_out=5,
        release=Release(worker="w1", status=TaskStatus.DONE, result="Done."),
    )
    return step_write(
        task=task,
        run=run,
        seq=1,
        kind=StepKind.FINAL,
        payload={"result": "Done."},
        before=settled,
        when="EXISTS (SELECT 1 FROM settle_task)",
    )


def test_a_final_answer_releases_the_task_and_settles_it_and_its_root(clerk):
    root = assigned_task(clerk)
    child, run = _claimed(clerk, parent=root)
    reservation = _reserve(child)
    cost = Decimal("0.000200")

    step = _final(child, run, reservation, cost)

    assert step is not None and Step.objects.get(pk=step.id).payload == {"result": "Done."}
    child.refresh_from_db()
    assert (child.status, child.result, child.lease_owner) == (TaskStatus.DONE, "Done.", "")
    assert child.lease_expires_at is None and child.finished_at is not None
    assert (child.cost, child.reserved_cost, child.reservation_id) == (
        cost,
        0,
        f"{reservation.id}!",
    )
    assert (child.tokens_in, child.tokens_out) == (10, 5)
    assert Task.objects.get(pk=root.pk).descendants_cost == cost
    assert _day(child) == (cost, 0)


def test_a_final_answer_for_a_task_no_longer_ours_changes_nothing(clerk):
    root = assigned_task(clerk)
    child, run = _claimed(clerk, parent=root)
    reservation = _reserve(child)
    Task.objects.filter(pk=child.pk).update(lease_owner="w2")

    assert _final(child, run, reservation, Decimal("0.000200")) is None

    assert not Step.objects.filter(task=child).exists()
    child.refresh_from_db()
    assert (child.status, child.result) == (TaskStatus.RUNNING, "")
    assert _money(child) == (0, reservation.amount, reservation.id)
    assert Task.objects.get(pk=root.pk).descendants_cost == reservation.amount
    assert _day(child) == (0, reservation.amount)


def test_only_a_delegated_task_settles_on_a_root(clerk):
    root = assigned_task(clerk)
    child = assigned_task(clerk, parent=root)
    reservation = budget.Reservation(amount=Decimal("1"), day=date(2026, 1, 2), max_tokens=1)

    assert [name for name, _, _ in settle(task=root, reservation=reservation, cost=0)] == [
        "settle_prev",
        "settle_task",
        "settle_day",
    ]
    assert [name for name, _, _ in settle(task=child, reservation=reservation, cost=0)] == [
        "settle_prev",
        "settle_task",
        "settle_day",
        "settle_root",
    ]


# --- how the statements are sent ----------------------------------------------------------------


def test_the_loops_statements_are_prepared_on_the_server(clerk):
    task, run = _claimed(clerk)
    step, parts = _guarded_note(task, run, "owned")
    assert parts_write(step, parts)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%INSERT INTO tasks_step%"],
        )
        assert cursor.fetchone()[0] >= 1


def test_parts_joined_into_a_named_statement_keep_their_values_in_order():
    text, params = named_ctes([("a", "SELECT %s, %s", [1, 2]), ("b", "SELECT %s", [3])], "c_")

    assert text == "a AS (SELECT %(c_0)s, %(c_1)s), b AS (SELECT %(c_2)s)"
    assert params == {"c_0": 1, "c_1": 2, "c_2": 3}
    with pytest.raises(ValueError, match="1 placeholders, 2 values"):
        named_ctes([("x", "SELECT %s", [1, 2])], "c_")
