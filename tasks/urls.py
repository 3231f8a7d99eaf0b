from django.urls import path

from tasks import views

app_name = "tasks"
urlpatterns = [
    path("", views.task_list, name="list"),
    path("<int:pk>/", views.task_detail, name="detail"),
    path("<int:pk>/tree/", views.task_tree_hx, name="tree_hx"),
    path("<int:pk>/attachments/<int:attachment_id>/", views.task_attachment, name="attachment"),
]
