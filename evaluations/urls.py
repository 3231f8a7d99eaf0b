from django.urls import include, path

from evaluations import views

app_name = "evaluations"
urlpatterns = [
    # The shadow-mode report (evaluations/shadow_urls.py); golden-task pages are added here.
    path("", include("evaluations.shadow_urls")),
    path("tasks/<int:pk>/golden/", views.golden_from_task, name="golden_from_task"),
    path("tasks/<int:pk>/golden/button/", views.golden_button_hx, name="golden_button_hx"),
    path("<str:handle>/", views.employee_evaluations, name="employee"),
]
