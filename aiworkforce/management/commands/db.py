"""Start, stop or describe the embedded PostgreSQL server under var/."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from aiworkforce import embedded_db


class Command(BaseCommand):
    help = (
        "Manage the embedded PostgreSQL + pgvector server (only used when DATABASE_URL is unset)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["status", "start", "stop"])

    def handle(self, *args, action: str, **options) -> None:
        if not settings.EMBEDDED_DATABASE:
            raise CommandError(
                "DATABASE_URL is set, so the embedded server is not in use; manage that server yourself."
            )
        if action == "status":
            self.stdout.write(embedded_db.status())
        elif action == "start":
            try:
                socket_dir = embedded_db.ensure_running()
            except embedded_db.EmbeddedDatabaseError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                self.style.SUCCESS(f"Embedded PostgreSQL is running (socket in {socket_dir}).")
            )
        elif embedded_db.stop():
            self.stdout.write(self.style.SUCCESS("Embedded PostgreSQL stopped."))
        else:
            self.stdout.write("Embedded PostgreSQL was not running.")
