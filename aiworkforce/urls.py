"""URL configuration."""

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView

from aiworkforce.views import healthz

admin.site.site_header = "AI Workforce back office"
admin.site.site_title = "AI Workforce"
admin.site.index_title = "Run the workforce"
# Sign in through allauth, so the admin gets the same login page and MFA as everything else.
admin.site.login = login_required(admin.site.login)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="employees:directory", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("employees/", include("employees.urls")),
    # /employees/<handle>/memory/ and /teams/<id>/memory/
    path("", include("employees.memory_urls")),
    path("hooks/", include("tasks.webhook_urls")),
    path("inbox/", include("approvals.urls")),
    path("tasks/", include("tasks.urls")),
]
