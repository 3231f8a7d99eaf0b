"""URLs of the memory governance page: /employees/<handle>/memory/ and /teams/<id>/memory/."""

from __future__ import annotations

from django.urls import path, register_converter

from employees.memory import views


class OwnerConverter:
    """'employees/<handle>' or 'teams/<id>': whose memory, resolved (and checked) by the view."""

    regex = r"(?:employees/[a-z][a-z0-9_-]{1,39}|teams/[0-9]+)"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(OwnerConverter, "owner")

app_name = "memory"
urlpatterns = [
    path("<owner:owner>/memory/", views.memory_page, name="page"),
    path("<owner:owner>/memory/export/", views.memory_export, name="export"),
    path("<owner:owner>/memory/forget/", views.memory_forget_review_hx, name="forget_review_hx"),
    path("<owner:owner>/memory/forget/confirm/", views.memory_forget_hx, name="forget_hx"),
    path("<owner:owner>/memory/<int:pk>/", views.memory_row_hx, name="row_hx"),
    path("<owner:owner>/memory/<int:pk>/edit/", views.memory_edit_form_hx, name="edit_form_hx"),
    path("<owner:owner>/memory/<int:pk>/edit/save/", views.memory_edit_hx, name="edit_hx"),
    path("<owner:owner>/memory/<int:pk>/pin/", views.memory_pin_hx, name="pin_hx"),
    path("<owner:owner>/memory/<int:pk>/delete/", views.memory_delete_hx, name="delete_hx"),
    path("<owner:owner>/memory/documents/", views.documents_hx, name="documents_hx"),
    path("<owner:owner>/memory/documents/upload/", views.document_upload_hx, name="upload_hx"),
    path(
        "<owner:owner>/memory/documents/<int:pk>/delete/",
        views.document_delete_hx,
        name="document_delete_hx",
    ),
]
