from django.urls import include, path

from evaluations import views

app_name = "evaluations"
urlpatterns = [
    # The shadow-mode report (evaluations/shadow_urls.py); golden-task pages are added here.
    path("", include("evaluations.shadow_urls")),
    path("tasks/<int:pk>/golden/", views.golden_from_task, name="golden_from_task"),
    path("tasks/<int:pk>/golden/button/", views.golden_button_hx, name="golden_button_hx"),
    path("<str:handle>/", views.employee_evaluations, name="employee"),
    path("<str:handle>/versions/", views.brief_versions_hx, name="versions_hx"),
    path(
        "<str:handle>/versions/<int:number>/evaluate/",
        views.evaluate_brief_version,
        name="evaluate",
    ),
    path(
        "<str:handle>/versions/<int:number>/activate/",
        views.activate_brief_version,
        name="activate",
    ),
]
