"""The dashboard's index: each employee's tasks by the time they finished, covering what its
figures read (status, arrival, cost, id), so a period's KPIs are an index-only scan."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0011_task_search_trigram_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                fields=["employee", "finished_at"],
                include=["status", "created_at", "cost", "id"],
                name="task_employee_finished_idx",
            ),
        ),
    ]
