"""Run one task in the foreground, printing each step as it happens."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tasks.loop import run_task
from tasks.models import Step, Task
from tasks.trace import describe_step


class Command(BaseCommand):
    help = "Run one task in the foreground and print each step."

    def add_arguments(self, parser) -> None:
        parser.add_argument("task_id", type=int)

    def handle(self, *args, task_id: int, **options) -> None:
        task = Task.objects.filter(pk=task_id).select_related("employee").first()
        if task is None:
            raise CommandError(f"There is no task #{task_id}.")
        self.stdout.write(
            f"Task #{task.pk} for @{task.employee.handle}: {task.title} ({task.get_status_display()})"
        )
        status = run_task(task.pk, on_step=self._print_step)
        if status is None:
            task.refresh_from_db()
            raise CommandError(
                f"Task #{task.pk} is {task.get_status_display().lower()} and cannot be run now"
                + (f" ({task.status_reason})" if task.status_reason else "")
                + "; only queued tasks, or running ones whose worker died, can be run."
            )
        task.refresh_from_db()
        self.stdout.write(
            f"=> {task.get_status_display()}"
            + (f": {task.status_reason}" if task.status_reason else "")
        )
        self.stdout.write(f"   tokens {task.tokens_in + task.tokens_out}, cost ${task.cost:.6f}")

    def _print_step(self, step: Step) -> None:
        numbers = ""
        if step.tokens_in or step.tokens_out:
            numbers = f" — {step.tokens_in}+{step.tokens_out} tokens, ${step.cost:.6f}, {step.latency_ms} ms"
        self.stdout.write(f"  [{step.seq}] {describe_step(step)}{numbers}")
        self.stdout.flush()
