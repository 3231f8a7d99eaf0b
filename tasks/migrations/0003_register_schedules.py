"""Register the batch pass with django-q2's scheduler, once, by name."""

from django.db import migrations


def register(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="run-due",
        defaults={
            "func": "tasks.jobs.run_due",
            "schedule_type": "I",  # minutes
            "minutes": 1,
            "repeats": -1,
        },
    )


def unregister(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="run-due").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0002_loop_budgets_outbox_webhooks"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(register, unregister)]
