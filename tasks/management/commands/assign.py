"""Give an employee a task from the command line, optionally waiting for the outcome."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from employees.models import Employee
from tasks.loop import run_task
from tasks.models import FINISHED_STATUSES, Task, TaskSource, TaskStatus
from tasks.services import TaskRefused, task_create

# Parked states: the task waits for a person or for time, not for a worker.
PARKED = {
    TaskStatus.WAITING_APPROVAL,
    TaskStatus.WAITING_ESCALATION,
    TaskStatus.WAITING_CHILDREN,
    TaskStatus.WAITING_HOURS,
    TaskStatus.BUDGET_EXHAUSTED,
    TaskStatus.MODEL_UNAVAILABLE,
    TaskStatus.MODEL_MISCONFIGURED,
    TaskStatus.PAUSED,
}
FIX_MODEL_SETTINGS = (
    "fix the model settings — the model name (the employee's, else DEFAULT_MODEL), the API key "
    "(OPENAI_API_KEY) and the endpoint (the employee's, else OPENAI_BASE_URL) — then retry the "
    'task in the back office (Tasks, action "Retry selected tasks stopped by the model") or '
    "assign it again."
)


class Command(BaseCommand):
    help = (
        'Assign a task: assign HANDLE "instructions" | - | --file PATH [--urgent] [--wait] [--json]'
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("handle", help="The employee's handle, with or without @.")
        parser.add_argument(
            "instructions",
            nargs="?",
            help="The instructions, or - to read them from standard input (for long ones).",
        )
        parser.add_argument(
            "--file",
            metavar="PATH",
            help="Read the instructions from this UTF-8 text file (no length limit).",
        )
        parser.add_argument("--title", default="", help="A short title (default: the first line).")
        parser.add_argument("--urgent", action="store_true", help="Run even outside working hours.")
        parser.add_argument("--wait", action="store_true", help="Run or wait until done or parked.")
        parser.add_argument(
            "--timeout", type=float, default=600, help="Seconds to wait (default 600)."
        )
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args, handle: str, instructions: str | None, **options) -> None:
        instructions = _instructions(instructions, options["file"])
        employee = Employee.objects.filter(handle=handle.lstrip("@")).first()
        if employee is None:
            known = ", ".join(Employee.objects.order_by("handle").values_list("handle", flat=True))
            raise CommandError(
                f"No employee with handle '{handle}'. Known handles: {known or 'none'}."
            )
        try:
            task, _ = task_create(
                employee=employee,
                title=options["title"],
                input=instructions,
                source=TaskSource.COMMAND,
                urgent=options["urgent"],
                dispatch=not options["wait"],
            )
        except (TaskRefused, ValidationError) as exc:
            raise CommandError(" ".join(getattr(exc, "messages", [str(exc)]))) from None
        if options["wait"]:
            task = self._run_or_wait(task, options["timeout"])
        self._report(task, as_json=options["json"])
        if task.status == TaskStatus.MODEL_MISCONFIGURED:
            # Not an outage that passes: a script must see that a person has to act.
            raise CommandError(
                f"Task #{task.pk} stopped because the model settings are wrong, not because the "
                f"model is down: {task.status_reason} Next: {FIX_MODEL_SETTINGS}"
            )

    def _run_or_wait(self, task: Task, timeout: float) -> Task:
        from tasks.services import task_dispatch

        queued = task_dispatch(task=task, enqueue=False) == TaskStatus.QUEUED
        if queued and run_task(task.pk) is None:  # someone claimed it first: leave it to them
            task_dispatch(task=task)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task.refresh_from_db()
            if task.status in FINISHED_STATUSES:
                return task
            # Delegated work: run what is queued in the task's tree here (a worker may take it
            # first), and stop only when nothing in the tree can move without a person.
            busy = self._run_linked(task)
            if task.status in PARKED and not busy:
                task.refresh_from_db()
                if task.status in PARKED or task.status in FINISHED_STATUSES:
                    return task
            time.sleep(0.2)
        raise CommandError(
            f"Task #{task.pk} is still {task.get_status_display().lower()} after {timeout:.0f}s."
        )

    def _run_linked(self, task: Task) -> bool:
        """Run the queued tasks of this one's tree (itself, once woken, and what it delegated).

        True while any of them is queued or running.
        """
        busy = False
        tree = Task.objects.filter(Q(pk=task.pk) | Q(root=task.pk)).order_by("pk")
        for linked in tree.filter(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING]):
            busy = True
            if linked.status == TaskStatus.QUEUED:
                run_task(linked.pk)
        return busy

    def _report(self, task: Task, *, as_json: bool) -> None:
        outcome = {
            "task": task.pk,
            "employee": task.employee.handle,
            "status": task.status,
            "reason": task.status_reason,
            "result": task.result,
            "tokens": task.tokens_in + task.tokens_out,
            "cost_usd": str(task.cost),
        }
        linked = list(_linked(task).select_related("employee"))
        if linked:
            outcome["linked"] = [
                {
                    "task": item.pk,
                    "employee": item.employee.handle,
                    "status": item.status,
                    "reason": item.status_reason,
                }
                for item in linked
            ]
        if as_json:
            self.stdout.write(json.dumps(outcome, indent=2))
            return
        self.stdout.write(
            f"Task #{task.pk} for @{task.employee.handle}: {task.get_status_display()}"
        )
        if task.status_reason:
            self.stdout.write(f"  why: {task.status_reason}")
        for item in linked:
            why = f" — {item.status_reason}" if item.status_reason else ""
            self.stdout.write(
                f"  linked: task #{item.pk} for @{item.employee.handle}: "
                f"{item.get_status_display()}{why}"
            )
        people = {TaskStatus.WAITING_APPROVAL, TaskStatus.WAITING_ESCALATION}
        if task.status in people or any(item.status in people for item in linked):
            self.stdout.write(
                "  next: a person decides in the inbox (/inbox/ or /inbox/escalations/); "
                "the workers (./workforce run) then carry on."
            )
        stopped = TaskStatus.MODEL_MISCONFIGURED
        if task.status == stopped or any(item.status == stopped for item in linked):
            self.stdout.write(f"  next: {FIX_MODEL_SETTINGS}")
        if task.result:
            self.stdout.write(task.result)
        self.stdout.write(f"  tokens {outcome['tokens']}, cost ${task.cost:.6f}")


def _instructions(argument: str | None, path: str | None) -> str:
    """The instructions from the argument, standard input (-) or --file, with clear errors.

    One command-line argument holds at most 128 kB on Linux; a file or a pipe has no limit.
    """
    if argument is not None and path is not None:
        raise CommandError(
            "Give the instructions either as an argument, as - (standard input) or with --file, "
            "not both."
        )
    if argument is None and path is None:
        raise CommandError(
            'Give the instructions: as an argument ("..."), as - to read standard input, or '
            "with --file PATH."
        )
    if argument is not None and argument != "-":
        return argument
    if path is not None:
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(
                f"Cannot read the instructions file {path}: {exc.strerror or exc}."
            ) from None
        empty = f"{source} is empty: write the instructions in it, or give them another way."
    else:
        source = "Standard input"
        if sys.stdin.isatty():
            sys.stderr.write("Reading the instructions from standard input; end with Ctrl-D.\n")
        stream = getattr(sys.stdin, "buffer", None)
        data = stream.read() if stream is not None else sys.stdin.read().encode()
        empty = "Standard input is empty: pipe the instructions in (… | assign HANDLE -)."
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position "
            f"{exc.start}); save it as UTF-8 (or convert it, e.g. with iconv) and try again."
        ) from None
    if not text.strip():
        raise CommandError(empty)
    return text


def _linked(task: Task):
    """The tasks delegated below a task that `assign` created (always the root of its tree)."""
    return Task.objects.filter(root=task.pk).order_by("pk")
