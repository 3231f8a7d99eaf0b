"""django-q2 job of the evaluations app: an evaluation asked for from the page."""

from __future__ import annotations

from employees.models import Employee
from evaluations.services import PAGE_CONCURRENCY, EvaluationRefused, evaluation_run


def evaluate(employee_id: int, brief_version: int) -> str:
    """Run the golden tasks against one brief version (the page shows the result when done)."""
    employee = Employee.objects.filter(pk=employee_id).first()
    if employee is None:
        return "employee gone"
    try:
        run = evaluation_run(
            employee=employee, brief_version=brief_version, concurrency=PAGE_CONCURRENCY
        )
    except EvaluationRefused as exc:
        return f"refused: {exc}"
    return f"run #{run.pk}: {run.passed}/{run.cases} passed"
