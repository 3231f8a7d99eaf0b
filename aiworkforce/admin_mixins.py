"""Admin helpers shared by the apps."""

from __future__ import annotations


class ReadOnlyAdminMixin:
    """For records written only by the system: runs, steps, the audit trail."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
