"""Back office: golden tasks are edited here (expectations checked by their schema); runs and
case results are read-only."""

from __future__ import annotations

from django.contrib import admin

from evaluations.models import CaseResult, EvaluationRun, GoldenTask


@admin.register(GoldenTask)
class GoldenTaskAdmin(admin.ModelAdmin):
    list_display = ["title", "employee", "source_task", "created_at"]
    list_select_related = ["employee"]
    list_filter = ["employee"]
    search_fields = ["title", "employee__handle"]
    raw_id_fields = ["employee", "source_task"]
    readonly_fields = ["created_by", "created_at"]


class CaseResultInline(admin.TabularInline):
    model = CaseResult
    extra = 0
    can_delete = False
    fields = ["golden_task", "passed", "failures", "task", "status", "steps", "cost"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EvaluationRun)
class EvaluationRunAdmin(admin.ModelAdmin):
    list_display = ["pk", "employee", "brief_version", "model", "passed", "cases", "started_at"]
    list_select_related = ["employee"]
    list_filter = ["employee"]
    inlines = [CaseResultInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
