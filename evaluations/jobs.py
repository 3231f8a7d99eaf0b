"""django-q2 job of the evaluations app: an evaluation queued from the page."""

from __future__ import annotations

from evaluations.models import EvaluationRun
from evaluations.services import PAGE_CONCURRENCY, EvaluationRefused, evaluation_run


def evaluate(run_id: int) -> str:
    """Run a queued evaluation once (a redelivered job finds the run taken and does nothing)."""
    queued = EvaluationRun.objects.select_related("employee").filter(pk=run_id).first()
    if queued is None:
        return "run gone"
    try:
        run = evaluation_run(employee=queued.employee, concurrency=PAGE_CONCURRENCY, queued=queued)
    except EvaluationRefused as exc:
        return f"refused: {exc}"
    return f"run #{run.pk}: {run.passed}/{run.cases} passed"
