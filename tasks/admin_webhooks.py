"""Webhook endpoints in the back office: created, rotated and disabled only through services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse

from aiworkforce.admin_mixins import ReadOnlyAdminMixin
from aiworkforce.audit import Actor
from tasks.models import WebhookDelivery, WebhookEndpoint
from tasks.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_disable,
    webhook_endpoint_rotate_secret,
)

ADD_FIELDS = ["name", "employee", "urgent"]
SHOWN_FIELDS = ["name", "employee", "urgent", "enabled", "receive_path", "created_at"]


def _show_once(secret: str) -> str:
    return f"Secret: {secret} — copy it now, it will not be shown again."


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "employee", "enabled", "urgent", "created_at", "receive_path"]
    list_filter = ["enabled", "urgent"]
    search_fields = ["name", "employee__name", "employee__handle"]
    list_select_related = ["employee"]
    autocomplete_fields = ["employee"]
    actions = ["rotate_secret", "disable"]

    def get_fields(self, request, obj=None) -> list[str]:
        return ADD_FIELDS if obj is None else SHOWN_FIELDS

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # Once created an endpoint is only rotated or disabled (both audited), never edited.
        return [] if obj is None else SHOWN_FIELDS

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # disable instead: deliveries and their tasks keep their history

    @admin.display(description="Receive URL")
    def receive_path(self, obj: WebhookEndpoint) -> str:
        if not obj.key:
            return "—"
        return reverse("webhooks:webhook_receive", kwargs={"key": obj.key})

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:
        if change:
            return  # every field is read-only on the change page
        endpoint, secret = webhook_endpoint_create(
            employee=obj.employee,
            name=obj.name,
            urgent=obj.urgent,
            actor=Actor.for_user(request.user),
        )
        # The admin redirects to and logs `obj`, so it becomes the row the service created.
        obj.pk, obj.key, obj.secret_encrypted = endpoint.pk, endpoint.key, endpoint.secret_encrypted
        obj.created_at, obj.enabled = endpoint.created_at, endpoint.enabled
        obj._state.adding = False
        url = request.build_absolute_uri(self.receive_path(endpoint))
        self.message_user(request, f"Webhook URL: {url}. {_show_once(secret)}", messages.SUCCESS)

    @admin.action(description="Rotate secret", permissions=["change"])
    def rotate_secret(self, request, queryset) -> None:
        for endpoint in queryset.select_related("employee"):
            secret = webhook_endpoint_rotate_secret(
                endpoint=endpoint, actor=Actor.for_user(request.user)
            )
            self.message_user(
                request,
                f"New secret for {endpoint.name}; the old one no longer works. {_show_once(secret)}",
                messages.SUCCESS,
            )

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request, queryset) -> None:
        actor = Actor.for_user(request.user)
        count = sum(
            webhook_endpoint_disable(endpoint=endpoint, actor=actor)
            for endpoint in queryset.select_related("employee")
        )
        self.message_user(request, f"Disabled {count} webhook endpoint(s).", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["webhook_id", "endpoint", "task", "received_at"]
    search_fields = ["webhook_id", "endpoint__name"]
    list_select_related = ["endpoint", "endpoint__employee", "task"]
