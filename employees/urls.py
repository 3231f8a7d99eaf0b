from django.urls import path

from employees import views

app_name = "employees"
urlpatterns = [
    path("", views.directory, name="directory"),
]
