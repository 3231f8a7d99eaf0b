"""Approval requests and escalations in the back office; decisions are made in the inbox."""

from __future__ import annotations

from django.contrib import admin

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from approvals.models import ApprovalRequest, Escalation, NotificationPreference


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "employee",
        "kind",
        "tool_name",
        "risk",
        "status",
        "created_at",
        "decided_by",
    ]
    list_filter = ["status", "kind", "risk"]
    search_fields = ["tool_name", "reason", "employee__handle"]
    list_select_related = ["employee", "decided_by"]
    raw_id_fields = ["task", "step", "employee", "decided_by"]


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "employee", "status", "summary", "created_at", "answered_by"]
    list_filter = ["status"]
    search_fields = ["summary", "employee__handle"]
    list_select_related = ["employee", "answered_by"]
    raw_id_fields = ["task", "employee", "answered_by"]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "mode", "last_digest_at"]
    list_filter = ["mode"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]
