"""Trigram indexes for the tasks list's search (title or input, case-insensitive substring).

Django's icontains on PostgreSQL is UPPER(col) LIKE UPPER('%q%'), so the indexes are on
UPPER(col) with gin_trgm_ops. pg_trgm is a trusted extension (PostgreSQL 13+); IF NOT EXISTS
makes TrigramExtension harmless where another app's migration created it already.
"""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0010_email_source_and_threading"),
    ]

    operations = [
        TrigramExtension(),
        migrations.AddIndex(
            model_name="task",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("title"), name="gin_trgm_ops"
                ),
                name="task_title_trgm",
            ),
        ),
        migrations.AddIndex(
            model_name="task",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("input"), name="gin_trgm_ops"
                ),
                name="task_input_trgm",
            ),
        ),
    ]
