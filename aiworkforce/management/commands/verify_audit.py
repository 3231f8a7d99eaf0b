"""Walk the audit trail's hash chain; exit non-zero naming the first broken entry."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from aiworkforce.audit import ChainBreak, audit_chain_breaks
from aiworkforce.models import AuditEntry


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits 1 and names the first broken entry."

    def handle(self, *args, **options) -> None:
        total = AuditEntry.objects.count()
        show_progress = sys.stderr.isatty() and total > 10_000
        for item in audit_chain_breaks():
            if isinstance(item, ChainBreak):
                entry = AuditEntry.objects.filter(pk=item.entry_id).first()
                described = f"entry #{item.entry_id}"
                if entry is not None:
                    described += f" ({entry.action} at {entry.created_at:%Y-%m-%d %H:%M:%S})"
                raise CommandError(
                    f"Audit chain broken at {described}: {item.reason}.", returncode=1
                )
            if show_progress:
                self.stderr.write(f"\rchecked {item:,} of {total:,}", ending="")
        if show_progress:
            self.stderr.write("")
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {total:,} entries verified."))
