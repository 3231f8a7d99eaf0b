"""Inbound webhook addresses, included at /hooks/."""

from __future__ import annotations

from django.urls import path

from tasks.webhooks import webhook_receive_view

app_name = "webhooks"

urlpatterns = [
    path("<uuid:key>/", webhook_receive_view, name="webhook_receive"),
]
