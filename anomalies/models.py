"""Anomaly rules that pause an employee: their defaults, and per-employee overrides."""

from __future__ import annotations

from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MinValueValidator
from django.db import models


class Rule(models.TextChoices):
    SPEND_SPIKE = "spend_spike", "Spend spike"
    ERROR_STREAK = "error_streak", "Error streak"
    REJECTION_STREAK = "rejection_streak", "Rejection streak"
    TOOL_SURGE = "tool_surge", "Tool-call surge"
    WAKE_LOOP = "wake_loop", "Wake loop"


# What each rule reads from the parameter columns (the admin shows this as help).
RULE_PARAMETERS = {
    Rule.SPEND_SPIKE: "multiplier K and floor: the last hour's spend over K x the trailing "
    "7-day hourly p95 and over the floor",
    Rule.ERROR_STREAK: "threshold N: N tasks in a row failed or escalated",
    Rule.REJECTION_STREAK: "threshold M, sample L and window: people rejected M of its last L "
    "proposals made within `window` minutes",
    Rule.TOOL_SURGE: "threshold: more calls of one tool in the last hour than this",
    Rule.WAKE_LOOP: "threshold and window: the same task text created more than `threshold` times "
    "within `window` minutes",
}

# The defaults a fresh install starts from (the data migration writes them once).
DEFAULTS: dict[str, dict] = {
    Rule.SPEND_SPIKE: {"multiplier": Decimal("5"), "floor": Decimal("1.00")},
    Rule.ERROR_STREAK: {"threshold": 5},
    Rule.REJECTION_STREAK: {"threshold": 3, "sample": 5, "window_minutes": 7 * 24 * 60},
    Rule.TOOL_SURGE: {"threshold": 60},
    Rule.WAKE_LOOP: {"threshold": 10, "window_minutes": 15},
}

_positive = [MinValueValidator(1)]


class RuleSettings(models.Model):
    """One rule's defaults for every employee; a column the rule does not read stays empty."""

    rule = models.CharField(max_length=20, choices=Rule.choices, unique=True)
    enabled = models.BooleanField(default=True)
    threshold = models.PositiveIntegerField(null=True, blank=True, validators=_positive)
    sample = models.PositiveIntegerField(null=True, blank=True, validators=_positive)
    multiplier = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(1)]
    )
    floor = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Dollars."
    )
    window_minutes = models.PositiveIntegerField(null=True, blank=True, validators=_positive)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rule"]
        verbose_name = "anomaly rule"
        verbose_name_plural = "anomaly rules"

    def __str__(self) -> str:
        return self.get_rule_display()


class EmployeeRuleOverride(models.Model):
    """One employee's own setting of one rule; an empty column keeps the rule's default."""

    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="anomaly_overrides"
    )
    rule = models.CharField(max_length=20, choices=Rule.choices)
    enabled = models.BooleanField(
        null=True, blank=True, help_text="Empty: as the rule's default; No: off for this employee."
    )
    threshold = models.PositiveIntegerField(null=True, blank=True, validators=_positive)
    sample = models.PositiveIntegerField(null=True, blank=True, validators=_positive)
    multiplier = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(1)]
    )
    floor = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    window_minutes = models.PositiveIntegerField(null=True, blank=True, validators=_positive)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["employee", "rule"]
        verbose_name = "anomaly rule override"
        constraints = [
            models.UniqueConstraint(fields=["employee", "rule"], name="one_override_per_rule")
        ]

    def __str__(self) -> str:
        return f"{self.get_rule_display()} for {self.employee}"


class AnomalyPause(models.Model):
    """One pause a rule made: the rule, its figures, and the pause's moment.

    `paused_at` is the employee's `status_changed_at` as the pause set it: while the employee
    is still paused at that moment, this is why it is paused (the dashboard shows it first).
    """

    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="anomaly_pauses"
    )
    rule = models.CharField(max_length=20, choices=Rule.choices)
    figures = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    reason = models.CharField(max_length=500)
    paused_at = models.DateTimeField()

    class Meta:
        ordering = ["-paused_at"]
        verbose_name = "pause by an anomaly rule"
        verbose_name_plural = "pauses by anomaly rules"
        indexes = [
            models.Index(fields=["employee", "paused_at"], name="anomaly_pause_employee_idx")
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_rule_display()} paused {self.employee} at {self.paused_at:%Y-%m-%d %H:%M}"
        )
