"""The audit trail: append-only and hash-chained, both enforced by the database.

Triggers refuse UPDATE and DELETE (migration 0002) and compute each row's hash over its content
and its predecessor's hash (migration 0003), so `manage.py verify_audit` finds a row altered by
someone who disabled the first trigger.
"""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class ActorType(models.TextChoices):
    USER = "user", "Person"
    EMPLOYEE = "employee", "AI employee"
    SYSTEM = "system", "System"


class AuditEntry(models.Model):
    # Set by the database (trigger aiworkforce_audit_chain), whatever the writer sends.
    created_at = models.DateTimeField(editable=False)
    action = models.CharField(
        max_length=100, db_index=True, help_text="Namespaced, e.g. employee.activated."
    )
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    # No database constraint and DO_NOTHING: removing a user or an employee must never need to
    # touch (update) an audit row. actor_label keeps a readable name regardless.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_employee = models.ForeignKey(
        "employees.Employee",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200)
    subject_type = models.CharField(max_length=100, blank=True, help_text="app_label.model")
    subject_id = models.CharField(max_length=64, blank=True)
    subject_label = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    prev_hash = models.CharField(max_length=64, default="", editable=False)
    hash = models.CharField(max_length=64, default="", editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"
        indexes = [models.Index(fields=["subject_type", "subject_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} by {self.actor_label}"


class ApiToken(models.Model):
    """A personal API token: a person's MCP client acts as that person with it.

    Only the SHA-256 of the secret is stored; the secret itself is shown once, when it is made.
    `prefix` (the first characters of the secret) lets a person recognise a token in lists.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="Where it is used, e.g. 'Laptop IDE'.")
    prefix = models.CharField(max_length=16, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "personal API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
