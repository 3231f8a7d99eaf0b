from django.urls import include, path

app_name = "evaluations"
urlpatterns = [
    # The shadow-mode report (evaluations/shadow_urls.py); golden-task pages are added here.
    path("", include("evaluations.shadow_urls")),
]
