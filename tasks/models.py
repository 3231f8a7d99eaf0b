"""Units of work (Task), executions of the agent loop (Run) and what happened in them (Step)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class TaskStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING_APPROVAL = "waiting_approval", "Waiting for approval"
    WAITING_ESCALATION = "waiting_escalation", "Escalated"
    WAITING_CHILDREN = "waiting_children", "Waiting for delegated work"
    WAITING_HOURS = "waiting_hours", "Waiting for working hours"
    BUDGET_EXHAUSTED = "budget_exhausted", "Budget exhausted"
    PAUSED = "paused", "Paused"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = {TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED}


class TaskSource(models.TextChoices):
    MANUAL = "manual", "Assigned by a person"
    DUTY = "duty", "Duty"
    WEBHOOK = "webhook", "Webhook"
    DELEGATION = "delegation", "Delegated"
    FOLLOW_UP = "follow_up", "Follow-up"
    COMMAND = "command", "Command line"


class TaskPriority(models.IntegerChoices):
    LOW = 10, "Low"
    NORMAL = 20, "Normal"
    HIGH = 30, "High"


class Task(models.Model):
    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.PROTECT, related_name="tasks"
    )
    title = models.CharField(max_length=200)
    input = models.TextField(help_text="The instructions or event data; untrusted.")
    source = models.CharField(max_length=12, choices=TaskSource.choices, default=TaskSource.MANUAL)
    priority = models.PositiveSmallIntegerField(
        choices=TaskPriority.choices, default=TaskPriority.NORMAL
    )
    urgent = models.BooleanField(default=False, help_text="Runs outside working hours.")
    due_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=TaskStatus.choices, default=TaskStatus.QUEUED, db_index=True
    )
    status_reason = models.CharField(max_length=500, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    requested_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by_employee = models.ForeignKey(
        "employees.Employee",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="requested_tasks",
    )
    # NULL, not "", means "no key": the unique constraint then ignores keyless tasks.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    result = models.TextField(blank=True)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["employee", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="task_idempotency_key_unique_per_employee",
            ),
            models.CheckConstraint(
                condition=Q(requested_by_user__isnull=True) | Q(requested_by_employee__isnull=True),
                name="task_requested_by_one_party",
                violation_error_message="A task is requested by a person or by an employee, not both.",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "priority", "created_at"], name="task_dispatch_idx"),
            models.Index(fields=["employee", "status"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def tokens_total(self) -> int:
        return self.tokens_in + self.tokens_out


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PARKED = "parked", "Parked"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost (lease expired)"


class Run(models.Model):
    """One execution of the agent loop for a task, from claim to park or finish."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    worker = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["task", "number"]
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="one_run_number")]

    def __str__(self) -> str:
        return f"run {self.number} of task #{self.task_id}"


class StepKind(models.TextChoices):
    LLM_CALL = "llm_call", "Model call"
    TOOL_CALL = "tool_call", "Tool call"
    APPROVAL_WAIT = "approval_wait", "Waiting for approval"
    ESCALATION = "escalation", "Escalation"
    DELEGATION = "delegation", "Delegation"
    NOTE = "note", "Note"
    FINAL = "final", "Final answer"
    ERROR = "error", "Error"


class Step(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="steps")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    seq = models.PositiveIntegerField(help_text="Order within the task, across runs.")
    kind = models.CharField(max_length=16, choices=StepKind.choices)
    payload = models.JSONField(default=dict, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "seq"]
        constraints = [models.UniqueConstraint(fields=["task", "seq"], name="one_step_per_seq")]

    def __str__(self) -> str:
        return f"task #{self.task_id} step {self.seq} ({self.get_kind_display()})"
