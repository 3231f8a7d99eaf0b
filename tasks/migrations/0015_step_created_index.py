"""An index on steps by time, for the anomaly rules' last hour of spend and tool calls."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0014_task_source_evaluation"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="step",
            index=models.Index(
                fields=["created_at"], include=["task_id", "cost"], name="step_created_idx"
            ),
        ),
    ]
