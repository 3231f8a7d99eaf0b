"""Trigram indexes for the inbox search, on the pending requests only.

pg_trgm is created once, by tasks' 0011 (the tasks search): depending on it, rather than
creating it here too, keeps migrating backwards possible (unapplying one app's
CREATE EXTENSION would otherwise have to drop the other app's indexes).
"""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0003_register_digest_schedule"),
        ("tasks", "0011_task_search_trigram_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="approvalrequest",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("reason"), name="gin_trgm_ops"
                ),
                condition=models.Q(("status", "pending")),
                name="approval_pending_reason_trgm",
            ),
        ),
        migrations.AddIndex(
            model_name="approvalrequest",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("tool_name"), name="gin_trgm_ops"
                ),
                condition=models.Q(("status", "pending")),
                name="approval_pending_tool_trgm",
            ),
        ),
    ]
