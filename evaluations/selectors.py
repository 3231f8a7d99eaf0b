"""Reads for the evaluations pages: who may manage an employee, and its evaluation history."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from employees.models import Employee, TeamMembership, TeamRole
from evaluations.models import CaseResult, EvaluationRun, GoldenTask

RUNS_SHOWN = 50


def employees_managed_by(user) -> QuerySet[Employee]:
    """Employees this person manages: its manager, a manager of its team, or a superuser."""
    if user.is_superuser:
        return Employee.objects.all()
    teams = TeamMembership.objects.filter(user=user, role=TeamRole.MANAGER).values("team")
    return Employee.objects.filter(Q(team__in=teams) | Q(manager=user))


def can_manage(user, employee: Employee) -> bool:
    return employees_managed_by(user).filter(pk=employee.pk).exists()


def golden_task_from(task_id: int) -> GoldenTask | None:
    return GoldenTask.objects.filter(source_task_id=task_id).first()


def evaluation_history(employee: Employee) -> dict:
    """The last runs (oldest first, for the chart), the pass rate per brief version, and the
    failing cases of the latest run."""
    runs = list(
        EvaluationRun.objects.filter(employee=employee, finished_at__isnull=False).order_by(
            "-started_at"
        )[:RUNS_SHOWN]
    )[::-1]
    versions: dict[str, list] = {}
    for run in runs:
        versions.setdefault(_version_label(run), []).append(run)
    summary = [
        {
            "label": label,
            "runs": len(items),
            "latest": items[-1],
            "rate": round(100 * items[-1].passed / items[-1].cases) if items[-1].cases else 0,
        }
        for label, items in versions.items()
    ]
    latest = runs[-1] if runs else None
    failing = (
        list(
            CaseResult.objects.filter(run=latest, passed=False)
            .select_related("golden_task", "task")
            .order_by("golden_task_id")
        )
        if latest
        else []
    )
    chart = {
        "labels": [run.started_at.strftime("%d %b %H:%M") for run in runs],
        "series": [
            {
                "label": label,
                "data": [
                    round(100 * run.passed / run.cases)
                    if run.cases and _version_label(run) == label
                    else None
                    for run in runs
                ],
            }
            for label in versions
        ],
    }
    return {
        "runs": runs[::-1],
        "summary": summary,
        "latest": latest,
        "failing": failing,
        "chart": chart,
        "golden_count": GoldenTask.objects.filter(employee=employee).count(),
    }


def _version_label(run: EvaluationRun) -> str:
    return f"v{run.brief_version}" if run.brief_version else "current brief"
