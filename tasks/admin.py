"""Tasks, runs and steps in the back office; runs and steps are read-only traces."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from aiworkforce.audit import Actor
from tasks import (
    admin_mcp,  # noqa: F401 - registers the MCP server admins
    admin_webhooks,  # noqa: F401 - registers the webhook admins
    services,
)
from tasks.models import DailySpend, OutboxEmail, Run, Step, Task, TaskSource, TaskStatus

# Stopped by the model: after an outage passed, or once a person fixed the model settings.
RETRYABLE = {TaskStatus.MODEL_UNAVAILABLE, TaskStatus.MODEL_MISCONFIGURED}


class RunInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Run
    extra = 0
    fields = ["number", "status", "worker", "started_at", "finished_at", "error"]
    readonly_fields = fields


class AssignTaskForm(forms.ModelForm):
    """What a manager fills in to assign work; everything else is set by the service."""

    class Meta:
        model = Task
        fields = ["employee", "title", "input", "urgent", "priority", "due_at"]
        labels = {"input": "Instructions"}

    def clean(self):
        cleaned = super().clean()
        employee = cleaned.get("employee")
        if employee is not None and employee.status in ("draft", "offboarded"):
            raise ValidationError(
                f"{employee.name} is {employee.get_status_display().lower()} and cannot take tasks."
            )
        return cleaned


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "employee",
        "status",
        "source",
        "priority",
        "urgent",
        "cost",
        "created_at",
    ]
    list_filter = ["status", "source", "priority", "urgent"]
    search_fields = ["title", "input", "employee__handle", "idempotency_key"]
    list_select_related = ["employee"]
    raw_id_fields = ["parent", "root", "requested_by_user", "requested_by_employee"]
    autocomplete_fields = ["employee"]
    readonly_fields = [
        "trace_link",
        "status",
        "status_reason",
        "result",
        "tokens_in",
        "tokens_out",
        "cost",
        "reserved_cost",
        "budget_overrides",
        "lease_owner",
        "lease_expires_at",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "source",
        "idempotency_key",
        "parent",
        "root",
        "depth",
        "expected_by",
        "descendants_cost",
        "requested_by_user",
        "requested_by_employee",
    ]
    inlines = [RunInline]
    actions = ["cancel", "retry"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = AssignTaskForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return AssignTaskForm.Meta.fields
        return [
            "trace_link",
            "employee",
            "title",
            "input",
            "urgent",
            "priority",
            "due_at",
            *[f for f in self.readonly_fields if f != "trace_link"],
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # An existing task's instructions are history: only its schedule may change here.
        return [*self.readonly_fields, "employee", "title", "input"]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj: Task, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            task, _ = services.task_create(
                employee=form.cleaned_data["employee"],
                title=form.cleaned_data["title"],
                input=form.cleaned_data["input"],
                source=TaskSource.MANUAL,
                requested_by_user=request.user,
                urgent=form.cleaned_data["urgent"],
                priority=form.cleaned_data["priority"],
                due_at=form.cleaned_data["due_at"],
            )
        except services.TaskRefused as exc:
            raise ValidationError(str(exc)) from None
        obj.pk = task.pk
        obj.__dict__.update({k: v for k, v in task.__dict__.items() if not k.startswith("_")})

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request, f"Assigned task #{obj.pk} to {obj.employee.name}: {obj.get_status_display()}."
        )
        return super().response_add(request, obj, post_url_continue)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Live trace")
    def trace_link(self, task: Task):
        return format_html(
            '<a href="{}">Open the task page</a>', reverse("tasks:detail", args=[task.pk])
        )

    @admin.action(description="Cancel selected tasks")
    def cancel(self, request, queryset) -> None:
        actor = Actor.for_user(request.user)
        cancelled = sum(
            services.task_cancel(task=t, actor=actor, reason=f"Cancelled by {request.user}")
            for t in queryset
        )
        self.message_user(
            request, f"Cancelled {cancelled} task{'s' if cancelled != 1 else ''}.", messages.SUCCESS
        )

    @admin.action(description="Retry selected tasks stopped by the model")
    def retry(self, request, queryset) -> None:
        """Queue again tasks stopped by the model; each resumes from its recorded steps."""
        actor = Actor.for_user(request.user)
        tasks = list(queryset.select_related("employee"))
        retried = sum(
            services.task_resume(
                task=t,
                from_statuses=RETRYABLE,
                actor=actor,
                reason=f"Retried by {request.user} after the model stopped it",
            )
            for t in tasks
        )
        skipped = len(tasks) - retried
        text = f"Queued {retried} task{'s' if retried != 1 else ''} again."
        if skipped:
            text += (
                f" {skipped} not retried: only tasks stopped by the model (model unavailable, "
                "model settings wrong) can be."
            )
        self.message_user(request, text, messages.SUCCESS if retried else messages.WARNING)


@admin.register(Run)
class RunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "task", "number", "status", "worker", "started_at", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["task"]
    raw_id_fields = ["task"]


@admin.register(Step)
class StepAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "task",
        "seq",
        "kind",
        "tokens_in",
        "tokens_out",
        "cost",
        "latency_ms",
        "created_at",
    ]
    list_filter = ["kind"]
    list_select_related = ["task"]
    raw_id_fields = ["task", "run"]


@admin.register(DailySpend)
class DailySpendAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["employee", "day", "spent", "reserved", "limit_override"]
    list_select_related = ["employee"]
    date_hierarchy = "day"


@admin.register(OutboxEmail)
class OutboxEmailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "subject",
        "task",
        "status",
        "attempts",
        "last_attempt_at",
        "next_attempt_at",
        "created_at",
        "sent_at",
    ]
    list_filter = ["status"]
    list_select_related = ["task"]
    search_fields = ["subject", "message_id"]
