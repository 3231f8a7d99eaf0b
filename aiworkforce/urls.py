"""URL configuration."""

from django.contrib import admin
from django.urls import include, path

from aiworkforce.views import admin_login, healthz

admin.site.site_header = "AI Workforce back office"
admin.site.site_title = "AI Workforce"
admin.site.index_title = "Run the workforce"
# The admin has no password form of its own: its login sends everyone through allauth (and
# its MFA stage), so a password alone never signs anyone in (aiworkforce.views.admin_login).
admin.site.login = admin_login

urlpatterns = [
    path("", include("dashboard.urls")),
    path("office/", include("office.urls")),
    path("evaluations/", include("evaluations.urls")),
    path("anomalies/", include("anomalies.urls")),
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("employees/", include("employees.urls")),
    # /employees/<handle>/memory/ and /teams/<id>/memory/
    path("", include("employees.memory.urls")),
    path("hooks/", include("tasks.webhook_urls")),
    path("mail/", include("mailboxes.urls")),
    path("inbox/", include("approvals.urls")),
    path("tasks/", include("tasks.urls")),
    path("", include("aiworkforce.mcp_server.urls")),  # /mcp/ and /accounts/tokens/
]
