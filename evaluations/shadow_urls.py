from django.urls import path

from evaluations import shadow_views

urlpatterns = [
    path("<str:handle>/shadow/", shadow_views.shadow_report_page, name="shadow_report"),
    path(
        "<str:handle>/shadow/proposals/<int:step_id>/",
        shadow_views.shadow_review,
        name="shadow_review",
    ),
]
