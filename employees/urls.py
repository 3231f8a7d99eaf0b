from django.urls import include, path

from employees import views
from employees.profile import views as profile_views

app_name = "employees"
urlpatterns = [
    path("", views.directory, name="directory"),
    path("org/", views.org_chart_page, name="org_chart"),
    path("hire/", include("employees.hiring.urls")),
    # The profile's fragments and actions (employees/profile/views.py).
    path("<str:handle>/now/", profile_views.profile_now_hx, name="profile_now_hx"),
    path(
        "<str:handle>/brief-diff/",
        profile_views.profile_brief_diff_hx,
        name="profile_brief_diff_hx",
    ),
    path("<str:handle>/assign/", profile_views.profile_assign, name="profile_assign"),
    path("<str:handle>/status/", profile_views.profile_status, name="profile_status"),
    # Last: a handle is any single path segment the routes above do not claim.
    path("<str:handle>/", profile_views.profile, name="profile"),
]
