"""Back office: the anomaly rules' defaults, and each employee's own setting of a rule."""

from __future__ import annotations

from django.contrib import admin

from anomalies.models import RULE_PARAMETERS, EmployeeRuleOverride, RuleSettings


@admin.register(RuleSettings)
class RuleSettingsAdmin(admin.ModelAdmin):
    list_display = [
        "rule",
        "enabled",
        "threshold",
        "sample",
        "multiplier",
        "floor",
        "window_minutes",
        "reads",
    ]
    list_editable = ["enabled", "threshold", "sample", "multiplier", "floor", "window_minutes"]
    readonly_fields = ["rule", "reads", "updated_at"]

    @admin.display(description="What the rule reads")
    def reads(self, obj: RuleSettings) -> str:
        return RULE_PARAMETERS.get(obj.rule, "")

    # One row per rule, written by the migration: a missing row would fall back silently.
    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EmployeeRuleOverride)
class EmployeeRuleOverrideAdmin(admin.ModelAdmin):
    list_display = [
        "employee",
        "rule",
        "enabled",
        "threshold",
        "sample",
        "multiplier",
        "floor",
        "window_minutes",
    ]
    list_filter = ["rule", "enabled"]
    list_select_related = ["employee"]
    search_fields = ["employee__handle", "employee__name"]
    autocomplete_fields = ["employee"]
