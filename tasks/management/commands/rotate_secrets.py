"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEY."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from aiworkforce.audit import Actor, audit_log
from aiworkforce.secrets import SecretDecryptionError, reencrypt_secret
from mailboxes.models import Mailbox
from tasks.models import McpCredential, McpServer, WebhookEndpoint

# (model, field) of every secret the project stores.
SECRETS = [
    (WebhookEndpoint, "secret_encrypted"),
    (McpServer, "secrets_encrypted"),
    (McpCredential, "secrets_encrypted"),
    (Mailbox, "imap_password_encrypted"),
]


class Command(BaseCommand):
    help = (
        "After adding a new key in front of FIELD_ENCRYPTION_KEY (new,old): re-encrypt every "
        "stored secret with it, so that the old key can then be removed."
    )

    def handle(self, *args, **options) -> None:
        counts, unreadable = {}, []
        with transaction.atomic():
            for model, field in SECRETS:
                counts[str(model._meta.verbose_name_plural)] = 0
                for row in model.objects.exclude(**{field: ""}).select_for_update():
                    try:
                        setattr(row, field, reencrypt_secret(getattr(row, field)))
                    except SecretDecryptionError:
                        unreadable.append(f"{model._meta.verbose_name} '{row}'")
                        continue
                    row.save(update_fields=[field])
                    counts[str(model._meta.verbose_name_plural)] += 1
            if unreadable:
                transaction.set_rollback(True)
                raise CommandError(
                    "Nothing was changed: no key in FIELD_ENCRYPTION_KEY opens the secret of "
                    + ", ".join(unreadable)
                    + ". List the old key after the new one (FIELD_ENCRYPTION_KEY=new,old)."
                )
            audit_log(
                action="secrets.rotated",
                actor=Actor.system("command line"),
                subject=None,
                data={"counts": counts},
            )
        done = ", ".join(f"{count} {name}" for name, count in counts.items())
        self.stdout.write(f"Re-encrypted with the first key: {done}. The old key may now go.")
