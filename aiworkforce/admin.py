"""The audit trail in the back office: read-only, like the table itself."""

from __future__ import annotations

from django.contrib import admin

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from aiworkforce.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "action", "actor_type", "actor_label", "subject_label"]
    list_filter = ["actor_type", "action"]
    search_fields = ["action", "actor_label", "subject_label", "subject_id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
