from django.urls import path

from employees import views
from employees.hiring import views as hiring_views
from employees.profile import views as profile_views

app_name = "employees"
urlpatterns = [
    path("", views.directory, name="directory"),
    path("org/", views.org_chart_page, name="org_chart"),
    path("hire/", hiring_views.hire, name="hire"),
    # Last: a handle is any single path segment the routes above do not claim.
    path("<str:handle>/", profile_views.profile, name="profile"),
]
