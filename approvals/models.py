"""What an AI employee asks a person for: approval of an action, or a decision it cannot make."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Upper

from tasks.tools import Risk


class ApprovalKind(models.TextChoices):
    TOOL_CALL = "tool_call", "Action"
    BUDGET_RAISE = "budget_raise", "Budget raise"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class ApprovalRequest(models.Model):
    task = models.ForeignKey("tasks.Task", on_delete=models.CASCADE, related_name="approvals")
    step = models.ForeignKey(
        "tasks.Step", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="approval_requests"
    )
    kind = models.CharField(max_length=14, choices=ApprovalKind.choices)
    tool_name = models.CharField(max_length=64, blank=True)
    arguments = models.JSONField(default=dict, blank=True, help_text="As the employee proposed.")
    approved_arguments = models.JSONField(
        null=True, blank=True, help_text="What was approved, when a person edited the proposal."
    )
    reason = models.TextField(blank=True, help_text="Why the employee wants this.")
    risk = models.CharField(max_length=6, choices=Risk.choices, default=Risk.MEDIUM)
    status = models.CharField(
        max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING, db_index=True
    )
    deadline = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the immediate emails to its approvers went out."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            # The inbox search (approvals.selectors.pending_ids_matching): `icontains` is
            # UPPER(col) LIKE UPPER('%q%'), which a trigram index on UPPER(col) serves. Only
            # pending rows are searched, so decided history never grows these indexes.
            GinIndex(
                OpClass(Upper("reason"), name="gin_trgm_ops"),
                name="approval_pending_reason_trgm",
                condition=models.Q(status="pending"),
            ),
            GinIndex(
                OpClass(Upper("tool_name"), name="gin_trgm_ops"),
                name="approval_pending_tool_trgm",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        what = self.tool_name if self.kind == ApprovalKind.TOOL_CALL else "budget raise"
        return f"{what} for task #{self.task_id} ({self.get_status_display()})"

    @property
    def sent_arguments(self) -> dict:
        """What runs (or ran): the person's edit when there is one, else the proposal."""
        return self.arguments if self.approved_arguments is None else self.approved_arguments

    @property
    def edited_fields(self) -> list[str]:
        """The arguments a person changed before approving, in the proposal's order."""
        if self.approved_arguments is None:
            return []
        before, after = self.arguments or {}, self.approved_arguments
        return [key for key in {**before, **after} if before.get(key) != after.get(key)]


class EscalationStatus(models.TextChoices):
    OPEN = "open", "Open"
    ANSWERED = "answered", "Answered"
    TAKEN_OVER = "taken_over", "Taken over by a person"
    CLOSED = "closed", "Closed"


class Escalation(models.Model):
    task = models.ForeignKey("tasks.Task", on_delete=models.CASCADE, related_name="escalations")
    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="escalations"
    )
    summary = models.TextField()
    evidence = models.JSONField(default=list, blank=True)
    options = models.JSONField(default=list, blank=True)
    recommendation = models.TextField(blank=True)
    status = models.CharField(
        max_length=10,
        choices=EscalationStatus.choices,
        default=EscalationStatus.OPEN,
        db_index=True,
    )
    chosen_option = models.CharField(max_length=300, blank=True)
    answer = models.TextField(blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Escalation on task #{self.task_id}: {self.summary[:60]}"


class NotificationMode(models.TextChoices):
    IMMEDIATE = "immediate", "An email for each request"
    DIGEST = "digest", "One hourly digest"
    OFF = "off", "No emails"


class NotificationPreference(models.Model):
    """How a person hears about approval requests; without a row, immediately."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    mode = models.CharField(
        max_length=10, choices=NotificationMode.choices, default=NotificationMode.IMMEDIATE
    )
    last_digest_at = models.DateTimeField(
        null=True, blank=True, help_text="Requests created up to this moment were in a digest."
    )

    def __str__(self) -> str:
        return f"{self.user}: {self.get_mode_display()}"
