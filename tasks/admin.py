"""Tasks, runs and steps in the back office; runs and steps are read-only traces."""

from __future__ import annotations

from django.contrib import admin

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from tasks.models import Run, Step, Task


class RunInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Run
    extra = 0
    fields = ["number", "status", "worker", "started_at", "finished_at", "error"]
    readonly_fields = fields


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
    raw_id_fields = ["employee", "parent", "requested_by_user", "requested_by_employee"]
    readonly_fields = [
        "status",
        "status_reason",
        "result",
        "tokens_in",
        "tokens_out",
        "cost",
        "lease_owner",
        "lease_expires_at",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "source",
        "idempotency_key",
        "parent",
        "requested_by_user",
        "requested_by_employee",
    ]
    inlines = [RunInline]

    # Tasks are created by triggers and the loop; assigning from here comes with the agent loop.
    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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
