"""Every change of a task's state: creation, dispatch, park, resume, cancel (claims: tasks.claims),
and delegation's: the linked child task, its deadline, waking the task that waits for it.

Status changes are compare-and-swaps; a count other than 1 means someone else got there first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from aiworkforce.storable import validate_storable
from employees.collaboration import collaboration_line, outside_lines_message
from employees.models import Employee, EmployeeStatus
from tasks.claims import worker_id
from tasks.models import (
    FINISHED_STATUSES,
    Task,
    TaskPriority,
    TaskSource,
    TaskStatus,
)
from tasks.selectors import ancestors

ACTING_STATUSES = {EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW}
# Statuses from which a dispatch may (re)start work.
DISPATCHABLE = {TaskStatus.QUEUED, TaskStatus.WAITING_HOURS, TaskStatus.PAUSED}
# A child in one of these states has something to report to the task that waits for it:
# finished, handed to a person, or stopped by its model (endpoint down, or settings wrong).
REPORTABLE = {
    *FINISHED_STATUSES,
    TaskStatus.WAITING_ESCALATION,
    TaskStatus.MODEL_UNAVAILABLE,
    TaskStatus.MODEL_MISCONFIGURED,
}
# The options a person is given when a delegated task is past its deadline.
KEEP_WAITING = "Keep waiting"
CONTINUE_WITHOUT = "Continue without it"


class TaskRefused(Exception):
    """A task that cannot be created, with a reason for the person or system that asked."""


def task_create(
    *,
    employee: Employee,
    title: str,
    input: str,
    source: str = TaskSource.MANUAL,
    requested_by_user=None,
    requested_by_employee: Employee | None = None,
    urgent: bool = False,
    priority: int = TaskPriority.NORMAL,
    due_at: datetime | None = None,
    parent: Task | None = None,
    expected_by: datetime | None = None,
    idempotency_key: str | None = None,
    dispatch: bool = True,
) -> tuple[Task, bool]:
    """Create a task (or return the one with the same idempotency key) and dispatch it."""
    if employee.status == EmployeeStatus.OFFBOARDED:
        raise TaskRefused(f"{employee.name} has been offboarded and takes no new tasks.")
    if employee.status == EmployeeStatus.DRAFT:
        raise TaskRefused(f"{employee.name} is still a draft; activate or shadow it first.")
    input = (input or "").strip()
    if not input:
        raise ValidationError("A task needs instructions.")
    title = (title or "").strip()[:200] or input.splitlines()[0][:200]
    # PostgreSQL text cannot hold NUL (and UTF-8 no lone surrogate): a clear refusal, not a 500.
    validate_storable(input, what="The instructions")
    validate_storable(title, what="The title")
    if idempotency_key:
        existing = Task.objects.filter(employee=employee, idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    task = Task(
        employee=employee,
        title=title,
        input=input,
        source=source,
        requested_by_user=requested_by_user if getattr(requested_by_user, "pk", None) else None,
        requested_by_employee=requested_by_employee,
        urgent=urgent,
        priority=priority,
        due_at=due_at,
        parent=parent,
        # A delegated task belongs to its parent's tree: the root's budget covers it too.
        root_id=(parent.root_id or parent.pk) if parent is not None else None,
        depth=parent.depth + 1 if parent is not None else 0,
        expected_by=expected_by,
        idempotency_key=idempotency_key or None,
    )
    try:
        with transaction.atomic():
            task.save()
            if requested_by_employee is not None:
                actor = Actor.for_employee(requested_by_employee)
            else:
                actor = Actor.for_user(requested_by_user)
            audit_log(
                action="task.created",
                actor=actor,
                subject=task,
                data={"employee": employee.handle, "source": source, "urgent": urgent},
            )
    except IntegrityError:
        # A concurrent trigger with the same key won the race: theirs is the task.
        existing = Task.objects.filter(employee=employee, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    if dispatch:
        task_dispatch(task=task)
    return task, True


def task_dispatch(*, task: Task, now: datetime | None = None, enqueue: bool = True) -> str:
    """Queue a task for a worker when it may run now; otherwise record why it waits.

    enqueue=False is for a caller that runs the task itself right away (`assign --wait`).
    """
    now = now or timezone.now()
    employee = task.employee
    if task.status not in DISPATCHABLE:
        return task.status
    if employee.status == EmployeeStatus.PAUSED:
        return _set_waiting(task, TaskStatus.PAUSED, f"{employee.name} is paused.")
    if employee.status not in ACTING_STATUSES:
        return task.status
    if task.due_at and task.due_at > now:
        return _set_waiting(task, TaskStatus.QUEUED, f"Due at {task.due_at:%Y-%m-%d %H:%M %Z}.")
    if not task.urgent and not employee.is_on_duty(now):
        return _set_waiting(
            task,
            TaskStatus.WAITING_HOURS,
            f"Outside {employee.name}'s working hours; waits for the next window.",
        )
    Task.objects.filter(pk=task.pk, status__in=DISPATCHABLE).update(
        status=TaskStatus.QUEUED, status_reason="", updated_at=now
    )
    task.status = TaskStatus.QUEUED
    if enqueue:
        transaction.on_commit(lambda: enqueue_run(task.pk))
    return TaskStatus.QUEUED


def _set_waiting(task: Task, status: str, reason: str) -> str:
    Task.objects.filter(pk=task.pk, status__in=DISPATCHABLE).update(
        status=status, status_reason=reason[:500], updated_at=timezone.now()
    )
    task.status, task.status_reason = status, reason
    return status


def enqueue_run(task_id: int) -> None:
    from django_q.tasks import async_task

    async_task("tasks.jobs.run_task", task_id, task_name=f"task {task_id}", group="tasks")


def task_release(
    *,
    task: Task,
    status: str,
    reason: str = "",
    result: str | None = None,
    worker: str | None = None,
) -> bool:
    """Leave the running state (parked or finished) if this worker still holds the task."""
    worker = worker or worker_id()
    now = timezone.now()
    fields = {
        "status": status,
        "status_reason": reason[:500],
        "lease_owner": "",
        "lease_expires_at": None,
        "updated_at": now,
    }
    if result is not None:
        fields["result"] = result
    if status in FINISHED_STATUSES:
        fields["finished_at"] = now
    with transaction.atomic():  # the change and its audit entry commit together
        changed = Task.objects.filter(
            pk=task.pk, status=TaskStatus.RUNNING, lease_owner=worker
        ).update(**fields)
        if changed:
            _audit_release(task, status, reason)
    if changed:
        task.status, task.status_reason = status, reason
    return bool(changed)


def _audit_release(task: Task, status: str, reason: str) -> None:
    audit_log(
        action=f"task.{_RELEASE_VERBS.get(status, 'parked')}",
        actor=Actor.for_employee(task.employee),
        subject=task,
        data={"status": status, "reason": reason[:500]},
    )


_RELEASE_VERBS = {
    TaskStatus.DONE: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "cancelled",
}


def task_resume(*, task: Task, from_statuses: set[str], actor: Actor, reason: str) -> bool:
    """Put a parked task back in the queue (after a decision, an answer or a raise)."""
    changed = Task.objects.filter(pk=task.pk, status__in=from_statuses).update(
        status=TaskStatus.QUEUED, status_reason="", updated_at=timezone.now()
    )
    if not changed:
        return False
    task.refresh_from_db()
    audit_log(action="task.resumed", actor=actor, subject=task, data={"reason": reason})
    task_dispatch(task=task)
    return True


@transaction.atomic
def task_cancel(*, task: Task, actor: Actor, reason: str, wake_parent: bool = True) -> bool:
    """Stop a task that has not finished (and what it delegated); its history stays."""
    # Descendants first: the same lock order as a delegated task's budget reservation.
    children_cancel(task=task, actor=actor, reason=reason)
    now = timezone.now()
    changed = (
        Task.objects.filter(pk=task.pk)
        .exclude(status__in=FINISHED_STATUSES)
        .update(
            status=TaskStatus.CANCELLED,
            status_reason=reason[:500],
            lease_owner="",
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
    if changed:
        # A child created while we waited for the parent's row lock is visible now: cancel it too.
        children_cancel(task=task, actor=actor, reason=reason)
        _close_open_requests(task)
        audit_log(action="task.cancelled", actor=actor, subject=task, data={"reason": reason})
        if wake_parent and task.parent_id:
            transaction.on_commit(lambda: parent_wake(child_id=task.pk))
    return bool(changed)


def _close_open_requests(task: Task) -> None:
    """A cancelled task's pending approvals and open escalations leave the inbox and the desk."""
    from approvals.models import (
        ApprovalRequest,
        ApprovalStatus,
        Escalation,
        EscalationStatus,
    )

    ApprovalRequest.objects.filter(task=task, status=ApprovalStatus.PENDING).update(
        status=ApprovalStatus.CANCELLED, decided_at=timezone.now()
    )
    Escalation.objects.filter(task=task, status=EscalationStatus.OPEN).update(
        status=EscalationStatus.CLOSED
    )


def tasks_reclaim_expired(*, now: datetime | None = None) -> int:
    """Requeue running tasks whose worker's lease ran out (a worker died)."""
    now = now or timezone.now()
    count = 0
    for task_id in Task.objects.filter(
        status=TaskStatus.RUNNING, lease_expires_at__lt=now
    ).values_list("pk", flat=True):
        transaction.on_commit(lambda task_id=task_id: enqueue_run(task_id))
        count += 1
    return count


def tasks_cancel_for_employee(*, employee: Employee, actor: Actor, reason: str) -> int:
    """Cancel every unfinished task of an employee (used when it is offboarded)."""
    count = 0
    for task in Task.objects.filter(employee=employee).exclude(status__in=FINISHED_STATUSES):
        count += task_cancel(task=task, actor=actor, reason=reason)
    return count


def tasks_dispatch_waiting(*, now: datetime | None = None, employee: Employee | None = None) -> int:
    """Dispatch queued and waiting tasks whose time has come (working hours, due times)."""
    now = now or timezone.now()
    count = 0
    # Queued tasks normally have a job in the broker already; only those left queued for a
    # minute (a due time that passed, a lost job) are dispatched again.
    waiting = Task.objects.filter(
        Q(status__in=[TaskStatus.WAITING_HOURS, TaskStatus.PAUSED])
        | Q(status=TaskStatus.QUEUED, updated_at__lt=now - timedelta(seconds=60)),
        employee__status__in=ACTING_STATUSES,
    )
    if employee is not None:
        waiting = waiting.filter(employee=employee)
    waiting = (
        waiting.filter(Q(due_at__isnull=True) | Q(due_at__lte=now))
        .select_related("employee")
        .prefetch_related("employee__working_windows")
    )
    for task in waiting:
        if task_dispatch(task=task, now=now) == TaskStatus.QUEUED:
            count += 1
    return count


# --- delegation: linked child tasks -------------------------------------------------------------
# The loop (tasks.loop.delegation) carries out a `delegate` call: it checks it here, creates the
# child task once per call, records a delegation step and parks the parent as "waiting for
# delegated work" without holding a worker. A child that finishes, fails, is cancelled or
# escalates wakes its parent, whose loop turns the child's outcome into the result of that call
# (tasks.context). A wait past its deadline is escalated to a person by the periodic `run_due`.
#
# Safety: a depth limit, a fan-out limit, no cycles (A → B → A), only along collaboration lines
# (employees.collaboration), and each child runs as its own employee with its own grants,
# approvals and budgets; its spend also counts against the root request's ceiling (tasks.budget).


@dataclass(frozen=True)
class Check:
    target: Employee | None
    refusal: str = ""
    existing: Task | None = None


def child_key(parent: Task, call_id: str) -> str:
    return f"delegate:{parent.pk}:{call_id}"


def delegation_check(*, task: Task, to: str, call_id: str, scope: dict | None) -> Check:
    """May this task delegate to the employee `to`? The checks a child never gets around."""
    handle = to.strip().lstrip("@").lower()
    target = Employee.objects.select_related("team").filter(handle=handle).first()
    if target is None:
        return Check(None, f"There is no employee @{handle}.")
    existing = Task.objects.filter(
        employee=target, idempotency_key=child_key(task, call_id)
    ).first()
    if existing is not None:
        return Check(target, existing=existing)  # this very call, already carried out
    source = task.employee
    if target.pk == source.pk:
        return Check(target, "You cannot delegate to yourself; use create_task for a follow-up.")
    if target.status in (EmployeeStatus.DRAFT, EmployeeStatus.OFFBOARDED):
        return Check(
            target, f"@{handle} is {target.get_status_display().lower()} and takes no work."
        )
    chain = ancestors(task)
    asked_by = [t for t in chain if t.employee_id == target.pk]
    if asked_by:
        path = " → ".join(f"@{t.employee.handle}" for t in [*reversed(chain), task])
        return Check(
            target,
            f"Refused: delegating to @{handle} would make a cycle ({path} → @{handle}); "
            f"@{handle} is already waiting on this request in task #{asked_by[0].pk}. "
            "Answer with what you have, or escalate to a person.",
        )
    if task.depth + 1 > settings.DELEGATION_MAX_DEPTH:
        return Check(
            target,
            f"Refused: this request is already {task.depth} delegation(s) deep and the limit is "
            f"{settings.DELEGATION_MAX_DEPTH}. Do the work yourself or escalate to a person.",
        )
    limit = min(settings.DELEGATION_MAX_CHILDREN, (scope or {}).get("max_children") or 10**6)
    if Task.objects.filter(parent=task).count() >= limit:
        return Check(target, f"Refused: a task may delegate at most {limit} requests.")
    if not collaboration_line(source, target, scope):
        return Check(target, "Refused: " + outside_lines_message(source, target))
    return Check(target)


def child_input(*, instructions: str, expected_result: str) -> str:
    return f"{instructions.strip()}\n\nExpected result: {expected_result.strip()}"


def delegation_create(
    *, parent: Task, call_id: str, target: Employee, arguments: dict, now: datetime | None = None
) -> Task:
    """Create the linked child task for one delegate call (once, whatever happens)."""
    now = now or timezone.now()
    hours = arguments.get("deadline_hours") or settings.DELEGATION_DEADLINE_HOURS
    first_line = (arguments["instructions"].strip().splitlines() or ["(no instructions)"])[0]
    child, _ = task_create(
        employee=target,
        title=f"For @{parent.employee.handle}: {first_line}"[:200],
        input=child_input(
            instructions=arguments["instructions"], expected_result=arguments["expected_result"]
        ),
        source=TaskSource.DELEGATION,
        requested_by_employee=parent.employee,
        urgent=parent.urgent,
        priority=parent.priority,
        parent=parent,
        expected_by=now + timedelta(hours=float(hours)),
        idempotency_key=child_key(parent, call_id),
    )
    return child


def delegation_release(*, child: Task) -> None:
    """The delegating task no longer waits for this child (so no deadline applies to it)."""
    Task.objects.filter(pk=child.pk).update(expected_by=None)


def delegation_extend(*, child: Task, hours: float | None = None) -> datetime:
    """A person chose to keep waiting: the child gets a new deadline."""
    deadline = timezone.now() + timedelta(hours=hours or settings.DELEGATION_DEADLINE_HOURS)
    Task.objects.filter(pk=child.pk).update(expected_by=deadline)
    return deadline


def parent_wake(*, child_id: int) -> bool:
    """A child has something to report: put its parent back in the queue if it waits for children."""
    child = (
        Task.objects.filter(pk=child_id)
        .values("parent_id", "status", "employee__handle", "expected_by")
        .first()
    )
    if child is None or child["parent_id"] is None:
        return False
    parent = Task.objects.select_related("employee").get(pk=child["parent_id"])
    return task_resume(
        task=parent,
        from_statuses={TaskStatus.WAITING_CHILDREN},
        actor=Actor.system("delegation"),
        reason=f"delegated task #{child_id} (@{child['employee__handle']}) is {child['status']}",
    )


def parent_wake_if_ready(*, parent: Task, awaiting: list[int]) -> bool:
    """After parking: a child may have reported in between; then wake the parent ourselves."""
    ready = Task.objects.filter(
        Q(status__in=REPORTABLE) | Q(expected_by__lte=timezone.now()), pk__in=awaiting
    ).exists()
    if not ready:
        return False
    return task_resume(
        task=parent,
        from_statuses={TaskStatus.WAITING_CHILDREN},
        actor=Actor.system("delegation"),
        reason="a delegated task reported while the task was parking",
    )


def children_cancel(*, task: Task, actor: Actor, reason: str) -> int:
    """Cancel the unfinished tasks delegated below a task that is being cancelled."""
    count = 0
    for child in Task.objects.filter(parent=task).exclude(status__in=FINISHED_STATUSES):
        count += task_cancel(
            task=child,
            actor=actor,
            reason=f"The delegating task #{task.pk} was cancelled: {reason}"[:500],
            wake_parent=False,
        )
    return count


def delegations_wake_overdue(*, now: datetime | None = None) -> int:
    """Wake parents whose awaited child is past its deadline; their loop escalates the wait."""
    now = now or timezone.now()
    overdue = Task.objects.filter(parent=OuterRef("pk"), expected_by__lte=now).exclude(
        status__in=REPORTABLE
    )
    count = 0
    for parent in Task.objects.filter(Exists(overdue), status=TaskStatus.WAITING_CHILDREN):
        with transaction.atomic():
            count += task_resume(
                task=parent,
                from_statuses={TaskStatus.WAITING_CHILDREN},
                actor=Actor.system("deadline"),
                reason="a delegated task is past its deadline",
            )
    return count
