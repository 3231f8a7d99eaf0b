"""Register the hourly approval digest with django-q2's scheduler, once, by name."""

from django.db import migrations


def register(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="approval-digest",
        defaults={
            "func": "approvals.jobs.send_digests",
            "schedule_type": "H",  # hourly
            "repeats": -1,
        },
    )


def unregister(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="approval-digest").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0002_notifications"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(register, unregister)]
