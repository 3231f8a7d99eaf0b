# Generated on 2026-12-04 19:24

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("evaluations", "0001_golden_tasks_and_runs"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluationrun",
            name="claimed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="evaluationrun",
            name="golden_digest",
            field=models.CharField(blank=True, max_length=64),
        ),
        # Runs made before the page could queue them were taken as they were made.
        migrations.RunSQL(
            "UPDATE evaluations_evaluationrun SET claimed_at = started_at",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
