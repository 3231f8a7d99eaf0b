"""The tasks list's order (newest first) as an index: the first page of a search for a common
word is read in that order and stops after 50 matches, instead of sorting every match."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0012_task_employee_finished_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="task",
            index=models.Index(fields=["created_at", "id"], name="task_list_order_idx"),
        ),
    ]
