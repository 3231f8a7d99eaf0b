"""Run an employee's golden tasks in shadow and report each case and the pass rate.

    ./workforce manage evaluate HANDLE [--json] [--brief-version N] [--concurrency K]

Exit status: 0 when every case passes, 1 when one fails, 2 when the evaluation cannot start.
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from aiworkforce.money import format_money
from employees.models import Employee
from evaluations.models import CaseResult, EvaluationRun
from evaluations.services import EvaluationRefused, evaluation_run


def case_json(result: CaseResult) -> dict:
    return {
        "golden_task": result.golden_task_id,
        "title": result.golden_task.title,
        "passed": result.passed,
        "failures": result.failures,
        "task": result.task_id,
        "status": result.status,
        "steps": result.steps,
        "cost": str(result.cost),
    }


class Command(BaseCommand):
    help = (
        "Run an employee's golden tasks in shadow (nothing is executed) and report the pass rate."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("handle")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print one JSON object."
        )
        parser.add_argument("--brief-version", type=int, default=None, metavar="N")
        parser.add_argument("--concurrency", type=int, default=1, metavar="K")

    def handle(self, *args, handle: str, as_json: bool, brief_version, concurrency: int, **options):
        if concurrency < 1 or concurrency > 64:
            raise CommandError("--concurrency takes 1 to 64 cases at once.", returncode=2)
        employee = Employee.objects.filter(handle=handle.lstrip("@")).first()
        if employee is None:
            raise CommandError(f"There is no employee @{handle.lstrip('@')}.", returncode=2)
        try:
            run = evaluation_run(
                employee=employee,
                brief_version=brief_version,
                concurrency=concurrency,
                progress=self._progress,
            )
        except EvaluationRefused as exc:
            raise CommandError(str(exc), returncode=2) from exc
        results = list(run.results.select_related("golden_task").order_by("golden_task_id"))
        if as_json:
            self._print_json(run, results)
        else:
            self._print_text(run, results)
        if run.passed != run.cases:
            sys.exit(1)

    def _progress(self, done: int, total: int, result: CaseResult) -> None:
        mark = "pass" if result.passed else "FAIL"
        self.stderr.write(f"[{done}/{total}] {mark} golden task #{result.golden_task_id}")
        self.stderr.flush()

    def _print_json(self, run: EvaluationRun, results: list[CaseResult]) -> None:
        payload = {
            "employee": run.employee.handle,
            "brief_version": run.brief_version,
            "model": run.model,
            "concurrency": run.concurrency,
            "cases": run.cases,
            "passed": run.passed,
            "results": [case_json(result) for result in results],
        }
        self.stdout.write(json.dumps(payload, indent=2))

    def _print_text(self, run: EvaluationRun, results: list[CaseResult]) -> None:
        version = f"brief version {run.brief_version}" if run.brief_version else "current brief"
        self.stdout.write(
            f"Evaluating @{run.employee.handle} ({version}, model {run.model}): "
            f"{run.cases} cases, {run.concurrency} at a time"
        )
        for result in results:
            mark = "PASS" if result.passed else "FAIL"
            self.stdout.write(
                f"  {mark}  #{result.golden_task_id} {result.golden_task.title} — "
                f"{result.steps} steps, {format_money(result.cost)}, task #{result.task_id}"
            )
            for failure in result.failures:
                self.stdout.write(f"        - {failure}")
        rate = 100 * run.passed / run.cases if run.cases else 0
        self.stdout.write(f"{run.passed}/{run.cases} passed ({rate:.0f}%)")
