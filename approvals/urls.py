from django.urls import path

from approvals import views

app_name = "approvals"
urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("count/", views.inbox_count_hx, name="count_hx"),
    path("bulk/", views.inbox_bulk_hx, name="bulk_hx"),
    path("notifications/", views.notifications_hx, name="notifications_hx"),
    path("<int:pk>/approve/", views.approval_approve_hx, name="approve_hx"),
    path("<int:pk>/reject/", views.approval_reject_hx, name="reject_hx"),
    path("<int:pk>/edit/", views.approval_edit_form_hx, name="edit_form_hx"),
    path("<int:pk>/edit/approve/", views.approval_edit_hx, name="edit_hx"),
    path("escalations/", views.escalations, name="escalations"),
    path("escalations/<int:pk>/answer/", views.escalation_answer_hx, name="escalation_answer_hx"),
]
