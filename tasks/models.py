"""Units of work (Task), executions of the agent loop (Run) and what happened in them (Step)."""

from __future__ import annotations

import shlex
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper


class TaskStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING_APPROVAL = "waiting_approval", "Waiting for approval"
    WAITING_ESCALATION = "waiting_escalation", "Escalated"
    WAITING_CHILDREN = "waiting_children", "Waiting for delegated work"
    WAITING_HOURS = "waiting_hours", "Waiting for working hours"
    BUDGET_EXHAUSTED = "budget_exhausted", "Budget exhausted"
    MODEL_UNAVAILABLE = "model_unavailable", "Model unavailable"
    # The endpoint refused the request itself (wrong model name, key, endpoint): not an outage.
    MODEL_MISCONFIGURED = "model_misconfigured", "Model settings wrong"
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
    EMAIL = "email", "E-mail"
    # A golden-task evaluation: everything is only proposed (tasks.loop.state.Turn.proposes).
    EVALUATION = "evaluation", "Evaluation"


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
    # Delegation: the request at the top of this task's tree (NULL for that request itself),
    # how many delegations below it this task is, and when the delegating task needs the result.
    root = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="descendants"
    )
    depth = models.PositiveSmallIntegerField(default=0)
    expected_by = models.DateTimeField(
        null=True, blank=True, help_text="When the delegating task waits for the result until."
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
    # Money set aside for model calls in flight; settled to `cost` when each call returns.
    reserved_cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    # The day (in the employee's time zone) whose spend row holds that reservation: a dead
    # worker's reservation is settled there, not on the day it is found.
    reserved_day = models.DateField(null=True, blank=True)
    # Which reservation that is: only its maker settles it, unless a reclaim charged it first.
    reservation_id = models.CharField(max_length=32, blank=True)
    # On a root task only: what the tasks delegated below it spent and have reserved, so their
    # cost counts against the root's ceiling (kept up to date by the budget statements).
    descendants_cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    # Raised ceilings approved by a person: {"task_cost": "1.00", "turn_tokens": 8000}.
    budget_overrides = models.JSONField(default=dict, blank=True)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(reserved_cost__gte=0) & Q(cost__gte=0) & Q(descendants_cost__gte=0),
                name="task_costs_not_negative",
            ),
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
            # The tasks list's search (title or input icontains: UPPER(col) LIKE UPPER('%q%')).
            GinIndex(OpClass(Upper("title"), name="gin_trgm_ops"), name="task_title_trgm"),
            GinIndex(OpClass(Upper("input"), name="gin_trgm_ops"), name="task_input_trgm"),
            # The tasks list's order, newest first: a common search word stops after a page.
            models.Index(fields=["created_at", "id"], name="task_list_order_idx"),
            # The dashboard's figures: each employee's tasks finished since a day, read from
            # the index alone (dashboard/selectors.py); evaluation runs are not work done.
            models.Index(
                fields=["employee", "finished_at"],
                include=["status", "created_at", "cost", "id"],
                condition=~Q(source="evaluation"),
                name="task_work_finished_idx",
            ),
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
        indexes = [
            # The anomaly rules' last hour (and trailing week) of spend and tool calls, for
            # every employee at once (anomalies/figures.py).
            models.Index(
                fields=["created_at"], include=["task_id", "cost"], name="step_created_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"task #{self.task_id} step {self.seq} ({self.get_kind_display()})"


class DailySpend(models.Model):
    """What one employee spent (and has reserved) on one day of its own time zone."""

    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="daily_spend"
    )
    day = models.DateField()
    spent = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    reserved = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    limit_override = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="A raise approved for this day.",
    )

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["employee", "day"], name="one_spend_row_per_day"),
            models.CheckConstraint(
                condition=Q(spent__gte=0) & Q(reserved__gte=0), name="daily_spend_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.employee_id} on {self.day}: {self.spent}"


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class OutboxEmail(models.Model):
    """An email an employee sent, delivered by a job and retried by the sweep (tasks/outbox.py);
    one row per tool call, so it is sent at most once per successful SMTP transaction."""

    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="emails")
    call_key = models.CharField(max_length=120, unique=True, help_text="task id + tool call id")
    to = models.JSONField()
    subject = models.CharField(max_length=300)
    body = models.TextField()
    status = models.CharField(
        max_length=8, choices=OutboxStatus.choices, default=OutboxStatus.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    # Built from call_key, so every attempt carries the same one: a receiver can tell a retry
    # after an unknown outcome (a worker died mid-send) from a new message.
    message_id = models.CharField(max_length=200, db_index=True)
    # The employee's own address when it has an open mailbox, fixed when the row is written
    # (blank: DEFAULT_FROM_EMAIL); the thread a reply belongs to (mailboxes.selectors).
    from_email = models.CharField(max_length=300, blank=True)
    in_reply_to = models.CharField(max_length=500, blank=True)
    references = models.TextField(blank=True)
    error = models.TextField(blank=True)  # the last attempt's
    # A pending row is swept from this moment (NULL: at once); a sending row is given back to
    # the sweep when its attempt is older than OUTBOX_SENDING_TIMEOUT_SECONDS.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    managers_notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the task's managers were told it was given up."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "outgoing email"

    def __str__(self) -> str:
        return f"{self.subject} to {', '.join(self.to)}"


class WebhookEndpoint(models.Model):
    """A signed inbound webhook (Standard Webhooks) that turns each event into a task."""

    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="webhooks"
    )
    name = models.CharField(max_length=100)
    key = models.UUIDField(unique=True, editable=False, help_text="The public part of the URL.")
    secret_encrypted = models.TextField(editable=False)
    enabled = models.BooleanField(default=True)
    urgent = models.BooleanField(default=False, help_text="Events run outside working hours.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["employee", "name"]

    def __str__(self) -> str:
        return f"{self.name} → @{self.employee.handle}" if self.employee_id else self.name


class WebhookDelivery(models.Model):
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    webhook_id = models.CharField(max_length=200)
    task = models.ForeignKey(Task, null=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "webhook_id"], name="one_delivery_per_webhook_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id} at {self.received_at:%Y-%m-%d %H:%M}"


class McpTransport(models.TextChoices):
    STDIO = "stdio", "Local command (stdio)"
    HTTP = "http", "Streamable HTTP"


class McpServer(models.Model):
    """A Model Context Protocol server whose tools employees may be granted, one by one."""

    name = models.SlugField(
        max_length=40,
        unique=True,
        help_text="Short name; its tools are called mcp:NAME/TOOL (letters, digits, - and _).",
    )
    transport = models.CharField(max_length=8, choices=McpTransport.choices)
    command = models.CharField(max_length=500, blank=True, help_text="stdio: the executable")
    args = models.JSONField(default=list, blank=True, help_text="stdio: its arguments")
    url = models.URLField(max_length=500, blank=True, help_text="HTTP: the endpoint's URL")
    # Environment values (stdio) and headers (HTTP), as one Fernet token of a JSON object
    # {"env": {...}, "headers": {...}}: written once, never shown again (names only).
    secrets_encrypted = models.TextField(blank=True, editable=False)
    secret_names = models.JSONField(default=list, blank=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.name

    @property
    def location(self) -> str:
        """Where it is, safe to show: the URL without credentials or query, or the command."""
        from tasks.mcp.client import display_url  # here: models must not load the MCP SDK

        return display_url(self.url) if self.url else shlex.join([self.command, *self.args])


class McpTool(models.Model):
    """A tool an MCP server offered when it was last listed: its description and schema."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=128)
    # ToolDefinition.as_json(): name, description, input_schema, annotations.
    definition = models.JSONField()
    seen_at = models.DateTimeField()

    class Meta:
        ordering = ["server", "name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="one_row_per_mcp_tool")
        ]
        verbose_name = "MCP tool"

    def __str__(self) -> str:
        return f"mcp:{self.server.name}/{self.name}"


class McpCredential(models.Model):
    """One employee's own secrets for an MCP server (its token, its environment values), used
    for that employee's calls over the server's shared ones, so the system at the other end
    sees which employee acted. Offboarding deletes them."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="credentials")
    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="mcp_credentials"
    )
    # Like McpServer's: one Fernet token of {"env": {...}, "headers": {...}}, names kept apart.
    secrets_encrypted = models.TextField(editable=False)
    secret_names = models.JSONField(default=list, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["server", "employee"]
        constraints = [
            models.UniqueConstraint(
                fields=["server", "employee"], name="one_mcp_credential_per_employee"
            )
        ]
        verbose_name = "MCP credential"

    def __str__(self) -> str:
        return f"{self.server.name} as {self.employee.handle}"
