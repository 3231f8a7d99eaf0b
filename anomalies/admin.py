"""Back office: the anomaly rules' defaults, each employee's own setting of a rule, and the
pauses the rules made. Every edit goes through anomalies.services, which audits it."""

from __future__ import annotations

from django.contrib import admin

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from aiworkforce.audit import Actor
from anomalies import services
from anomalies.models import RULE_PARAMETERS, AnomalyPause, EmployeeRuleOverride, RuleSettings


def _actor(request) -> Actor:
    return Actor.for_user(request.user)


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

    # The change form and the list's inline edits alike.
    def save_model(self, request, obj, form, change) -> None:
        services.rule_settings_update(rule_settings=obj, actor=_actor(request))


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

    def save_model(self, request, obj, form, change) -> None:
        services.rule_override_save(override=obj, actor=_actor(request))

    def delete_model(self, request, obj) -> None:
        services.rule_override_delete(override=obj, actor=_actor(request))

    def delete_queryset(self, request, queryset) -> None:
        """The list's "delete selected" action: one audited removal per override."""
        for override in queryset.select_related("employee"):
            services.rule_override_delete(override=override, actor=_actor(request))


@admin.register(AnomalyPause)
class AnomalyPauseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Written by the rules' pass, kept as history."""

    list_display = ["paused_at", "employee", "rule", "reason"]
    list_filter = ["rule"]
    list_select_related = ["employee"]
    search_fields = ["employee__handle", "employee__name"]
    date_hierarchy = "paused_at"
