from django.urls import path

from employees import views

app_name = "employees"
urlpatterns = [
    path("", views.directory, name="directory"),
    path("org/", views.org_chart_page, name="org_chart"),
]
