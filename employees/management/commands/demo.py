"""Load the demo workforce (idempotent: only what is missing is created)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from employees.demo import load_demo_workforce


class Command(BaseCommand):
    help = "Load the demo workforce: teams, AI employees with briefs, SOPs, tools and duties."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--owner",
            help="Username to make manager of the demo teams and employees (default: the first superuser).",
        )

    def handle(self, *args, owner: str | None = None, **options) -> None:
        User = get_user_model()
        user = None
        if owner:
            user = User.objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"No user called {owner!r}; create it first.")
        else:
            user = User.objects.filter(is_superuser=True).order_by("pk").first()
        created = load_demo_workforce(owner=user)
        if any(created.values()):
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo workforce loaded: {created['teams']} teams, {created['employees']} "
                    f"employees and {created['golden tasks']} golden tasks created."
                )
            )
        else:
            self.stdout.write("Demo workforce already present; nothing changed.")
