"""The anomaly rules' default settings (once: later edits are kept) and their every-minute
pass in django-q2's scheduler, registered by name."""

from decimal import Decimal

from django.db import migrations

DEFAULTS = {  # as anomalies.models.DEFAULTS when this was written
    "spend_spike": {"multiplier": Decimal("5"), "floor": Decimal("1.00")},
    "error_streak": {"threshold": 5},
    "rejection_streak": {"threshold": 3, "sample": 5, "window_minutes": 7 * 24 * 60},
    "tool_surge": {"threshold": 60},
    "wake_loop": {"threshold": 10, "window_minutes": 15},
}


def register(apps, schema_editor):
    RuleSettings = apps.get_model("anomalies", "RuleSettings")
    for rule, values in DEFAULTS.items():
        RuleSettings.objects.get_or_create(rule=rule, defaults=values)
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="anomaly-rules",
        defaults={
            "func": "anomalies.jobs.evaluate_rules",
            "schedule_type": "I",  # minutes
            "minutes": 1,
            "repeats": -1,
        },
    )


def unregister(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="anomaly-rules").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("anomalies", "0001_rules_and_overrides"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(register, unregister)]
