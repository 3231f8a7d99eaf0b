"""The audit trail and personal API tokens in the back office: read-only, but for revoking."""

from __future__ import annotations

from django.contrib import admin, messages

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from aiworkforce.api_tokens import api_token_revoke
from aiworkforce.models import ApiToken, AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "action", "actor_type", "actor_label", "subject_label"]
    list_filter = ["actor_type", "action"]
    search_fields = ["action", "actor_label", "subject_label", "subject_id"]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who holds which token, and when it was last used; the hash is never shown."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    fields = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("aiworkforce.change_apitoken")

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset) -> None:
        revoked = sum(api_token_revoke(token=token, user=request.user) for token in queryset)
        self.message_user(
            request, f"Revoked {revoked} token{'s' if revoked != 1 else ''}.", messages.SUCCESS
        )
