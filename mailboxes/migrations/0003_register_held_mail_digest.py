"""Register the held-mail digest with django-q2's scheduler, once, by name."""

from django.db import migrations


def register(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="held-mail-digest",
        defaults={
            "func": "mailboxes.jobs.send_held_mail_digests",
            "schedule_type": "I",  # every `minutes`
            "minutes": 10,
            "repeats": -1,
        },
    )


def unregister(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="held-mail-digest").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("mailboxes", "0002_imap_failures_held_notices"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(register, unregister)]
