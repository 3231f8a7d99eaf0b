"""Golden tasks (an input and what doing it right looks like) and evaluation runs over them."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

from evaluations.expectations import validate_expectations


class GoldenTask(models.Model):
    """A task an employee must keep getting right, with its expectations (evaluations/expectations.py)."""

    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="golden_tasks"
    )
    title = models.CharField(max_length=200)
    input = models.TextField()
    expectations = models.JSONField(validators=[validate_expectations])
    # The real task it was made from (one click on a finished task's page), if any.
    source_task = models.ForeignKey(
        "tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["employee", "id"]

    def __str__(self) -> str:
        return f"{self.employee.handle}: {self.title}"


class EvaluationRun(models.Model):
    """One `evaluate` of an employee's golden tasks, with one brief version and one model."""

    employee = models.ForeignKey(
        "employees.Employee", on_delete=models.CASCADE, related_name="evaluation_runs"
    )
    # The BriefVersion number evaluated (NULL: the brief as it stands, with no version saved).
    brief_version = models.PositiveIntegerField(null=True, blank=True)
    model = models.CharField(max_length=200)
    concurrency = models.PositiveSmallIntegerField(default=1)
    cases = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    # What it was measured on: the golden tasks as they were (evaluations.services.golden_digest).
    # Two versions' pass rates are compared only between runs on the same cases and model.
    golden_digest = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    # NULL: queued from the page and not yet taken by a worker (a retried job finds it taken).
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["employee", "started_at"])]

    def __str__(self) -> str:
        return f"{self.employee.handle} evaluation #{self.pk}"

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.cases if self.cases else None


class CaseResult(models.Model):
    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="results")
    golden_task = models.ForeignKey(GoldenTask, on_delete=models.CASCADE, related_name="results")
    passed = models.BooleanField()
    failures = models.JSONField(default=list, blank=True)  # in words
    # The evaluation task (source "evaluation"): its page is the case's trace.
    task = models.ForeignKey(
        "tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=20, blank=True)
    steps = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))

    class Meta:
        ordering = ["run", "golden_task"]
        constraints = [
            models.UniqueConstraint(fields=["run", "golden_task"], name="one_result_per_case")
        ]

    def __str__(self) -> str:
        return f"{self.golden_task} in run #{self.run_id}: {'pass' if self.passed else 'fail'}"
