"""The hire page and its fragments, included under /employees/hire/ in the employees namespace."""

from django.urls import path

from employees.hiring import views

urlpatterns = [
    path("", views.hire, name="hire"),
    path("start/", views.hire_start, name="hire_start"),
    path("step/", views.hire_step_hx, name="hire_step_hx"),
    path("cron/", views.hire_cron_hx, name="hire_cron_hx"),
    path("submit/", views.hire_submit, name="hire_submit"),
    path("team/", views.hire_team, name="hire_team"),
    path("export/", views.team_export, name="team_export"),
    path("import/", views.team_import_view, name="team_import"),
]
