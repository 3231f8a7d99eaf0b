"""A run in progress: the `Turn` every part of the loop works on, and how it writes and stops.

Every step is written through `Turn.record` (one statement, guarded by the worker's lease);
every way out of the loop before the task is done raises `Parked` through `stop`, `park` or
`park_with`, which report what the task is now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from django.db import connection, transaction

from aiworkforce.audit import Actor, audit_insert_sql
from employees.models import EmployeeStatus, ToolGrant, ToolPolicy
from tasks import services
from tasks.models import Run, Step, StepKind, Task, TaskSource, TaskStatus
from tasks.steps import GUARDED, GUARDS, Carry, Part, guard_part, parts_write, step_parts

StepCallback = Callable[[Step], None]


class Parked(Exception):
    """Raised inside the loop to stop it; the task has already been released."""


@dataclass
class Turn:
    """One run of one task, from its claim until it finishes or parks."""

    task: Task
    run: Run
    worker: str
    grants: dict[str, ToolGrant]
    on_step: StepCallback | None
    # The task's steps, read once when the run starts and appended to as they are recorded.
    steps: list[Step] = field(default_factory=list)
    outcome: str = TaskStatus.RUNNING
    next_seq: int = 1
    # The loop breaker counts only what happened since a person last said "continue".
    reset_seq: int = 0
    # Memories recalled for this task (payload dicts); `recall_unrecorded` until the first
    # model step carries them, so a resumed task sees exactly what it saw then.
    memories: list[dict] = field(default_factory=list)
    recall_unrecorded: bool = False
    recall_warning: str = ""
    # Delegated tasks (id → handle) this run found still working: the task waits for them.
    awaiting: dict[int, str] = field(default_factory=dict)
    # A tool's outcome not yet written: the next statement carries it (see record's `hold`).
    held: Carry | None = None
    # Tool names the model calls by another name (tools.Tool.model_name) → the tool's name.
    model_names: dict[str, str] = field(default_factory=dict)

    def record(
        self,
        kind: str,
        payload: dict,
        *,
        before: list[Part] = (),
        after: list[Part] = (),
        guard: str | None = "owned",
        hold: bool = False,
        **numbers,
    ) -> Step:
        """Write one step (with whatever must commit with it) in one statement.

        With a guard the step is written only if the task is still this worker's (and, for
        "acting", the employee may still act); otherwise the loop stops here (see stop).

        With `hold`, the statement is kept and run with the next one: the next turn's budget
        reservation, or a flush before anything else is written or any tool runs (flush).
        Only for a tool's outcome recorded outside a transaction (a read-only tool, or an
        HTTP call after its intent), so that nothing but computing the next prompt can come
        between and the step is still committed before the next one begins; this saves a
        round trip and a commit per turn.
        """
        self.flush()
        parts = (
            [guard_part(guard, task=self.task, worker=self.worker), *before] if guard else before
        )
        step, parts = step_parts(
            task=self.task,
            run=self.run,
            seq=self.next_seq,
            kind=kind,
            payload=payload,
            before=parts,
            after=after,
            when=GUARDED if guard else "",
            **numbers,
        )
        if hold:
            self.held = (step, parts)
        elif not parts_write(step, parts):
            self.stop()
        self.steps.append(step)
        self.next_seq += 1
        if self.on_step and not hold:
            self.on_step(step)
        return step

    def record_result(
        self,
        call_id: str,
        name: str,
        arguments,
        status: str,
        result: dict,
        *,
        audit: tuple[str, dict] | None = None,
        guard: str = "owned",
        hold: bool = False,
    ) -> Step:
        """Record a tool call's outcome (and its audit entry, in the same statement)."""
        after = [self.audit(audit[0], audit[1])] if audit else []
        return self.record(
            StepKind.TOOL_CALL,
            tool_payload(call_id, name, arguments, status, result),
            after=after,
            guard=guard,
            hold=hold,
        )

    @property
    def evaluating(self) -> bool:
        """A golden-task evaluation: nothing it does may reach the world or a person."""
        return self.task.source == TaskSource.EVALUATION

    def proposes(self, tool, grant: ToolGrant) -> bool:
        """Is this call only proposed (recorded, not carried out)?

        Shadow mode proposes side effects. An evaluation proposes everything but a read that
        stays in our database (recall): no mail, MCP or HTTP call, task, memory, delegation,
        escalation or approval request, whatever the employee's status.
        """
        if self.evaluating:
            local_read = not (
                tool.side_effects
                or tool.writes_database
                or not tool.transactional
                or tool.parks_task
                or tool.delegates
                or tool.name.startswith("mcp:")
            )
            return not local_read or grant.policy == ToolPolicy.NEEDS_APPROVAL
        return tool.side_effects and self.task.employee.status == EmployeeStatus.SHADOW

    def flush(self) -> None:
        """Write the held step, if any, on its own."""
        if self.held is None:
            return
        step, parts = self.held
        self.held = None
        if step.id is not None:
            return  # the statement that carried it wrote it already
        if not parts_write(step, parts):
            self.stop()
        if self.on_step:
            self.on_step(step)

    def stop(self) -> NoReturn:
        """A guarded write found the task no longer ours, or its employee unable to act."""
        row = (
            Task.objects.filter(pk=self.task.pk)
            .values("status", "lease_owner", "employee__status")
            .first()
        )
        if row is None or row["status"] != TaskStatus.RUNNING or row["lease_owner"] != self.worker:
            # Cancelled (or finished by a person), or reclaimed by another worker: write
            # nothing more, and report what the task is now, so this run is not left looking
            # parked.
            if row is not None:
                self.outcome = row["status"]
            raise Parked
        self.check_employee(row["employee__status"])
        raise Parked

    def check_employee(self, status: str | None = None) -> None:
        """Paused employees take no new step; offboarded ones stop for good."""
        employee = self.task.employee
        status = status or employee.status
        employee.status = status
        if self.evaluating and status != EmployeeStatus.OFFBOARDED:
            return  # it only proposes: a paused or draft brief may be measured (evaluations)
        if status == EmployeeStatus.PAUSED:
            self.park(TaskStatus.PAUSED, f"{employee.name} was paused.")
        if status in (EmployeeStatus.OFFBOARDED, EmployeeStatus.DRAFT):
            self.park(TaskStatus.CANCELLED, f"{employee.name} is {status}.")

    def audit(self, action: str, data: dict, when: str = GUARDED) -> Part:
        """An audit entry by this task's employee, to write in the same statement as a step."""
        sql, params = audit_insert_sql(
            action=action,
            actor=Actor.for_employee(self.task.employee),
            subject=self.task,
            data=data,
            when=when,
        )
        return ("audit", sql, params)

    def park(self, status: str, reason: str) -> NoReturn:
        """Release the task in `status` and leave the loop."""
        self.flush()
        if not services.task_release(
            task=self.task, status=status, reason=reason, worker=self.worker
        ):
            self.stop()  # cancelled or reclaimed meanwhile: report what it is now
        self.outcome = status
        raise Parked

    def park_with(self, status: str, reason: str, write: Callable[[], None]) -> NoReturn:
        """Create what the task waits for (an approval, an escalation) and park, atomically.

        A decision made the moment the request exists then finds the task already parked, so
        its resume cannot be lost.
        """
        self.flush()
        if self.evaluating:
            self.park(status, reason)  # an evaluation asks nobody: its runner closes it
        with transaction.atomic():
            # The task row first, then what write() audits: every transaction that touches
            # both takes the row before the audit chain's lock, so two never wait on each other.
            released = self.lock_owned()
            if released:
                write()
                released = services.task_release(
                    task=self.task, status=status, reason=reason, worker=self.worker
                )
            if not released:
                transaction.set_rollback(True)
        if not released:
            self.stop()  # cancelled or reclaimed meanwhile: nothing was written
        self.outcome = status
        raise Parked

    def lock_owned(self) -> bool:
        """Lock the task row inside a transaction, if this worker still holds it."""
        with connection.cursor() as cursor:
            cursor.execute(GUARDS["owned"], [self.task.pk, self.worker])
            return cursor.fetchone() is not None

    def lock_while_acting(self) -> bool:
        """Lock the task row inside a transaction, if the task and its employee may act."""
        with connection.cursor() as cursor:
            cursor.execute(GUARDS["acting"], [self.task.pk, self.worker])
            return cursor.fetchone() is not None


def tool_payload(call_id: str, name: str, arguments, status: str, result: dict) -> dict:
    return {
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
        "result": result,
    }
