"""Trigram indexes for the inbox search, on the pending requests only.

pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it; IF NOT
EXISTS makes this harmless where another app's migration created it already.
"""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0003_register_digest_schedule"),
    ]

    operations = [
        TrigramExtension(),
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
