"""Reads for the evaluations pages: who may manage an employee, and its evaluation history."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from employees.models import BriefVersion, Employee, TeamMembership, TeamRole
from employees.selectors import active_brief_version
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


VERSIONS_SHOWN = 8


def brief_version_rows(employee: Employee) -> list[dict]:
    """The latest versions with their state (live, draft, earlier), their latest evaluation
    and what stands between each one and going live."""
    versions = list(
        BriefVersion.objects.filter(employee=employee)
        .select_related("author", "activated_by")
        .order_by("-number")[:VERSIONS_SHOWN]
    )
    live = active_brief_version(employee)
    rows = []
    for version in versions:
        is_live = live is not None and live.pk == version.pk
        rows.append(
            {
                "version": version,
                "state": "live" if is_live else ("draft" if version.is_draft else "earlier"),
                "score": version_score(employee, version.number),
                "blocked": "" if is_live else activation_check(employee, version),
            }
        )
    return rows


@dataclass(frozen=True)
class VersionScore:
    """A version's latest finished evaluation, if it has one."""

    number: int
    run: EvaluationRun | None

    @property
    def rate(self) -> float | None:
        return self.run.pass_rate if self.run else None

    @property
    def percent(self) -> int | None:
        return None if self.rate is None else round(100 * self.rate)

    def words(self) -> str:
        if self.run is None:
            return f"v{self.number} has not been evaluated"
        return (
            f"v{self.number} passes {self.run.passed}/{self.run.cases} "
            f"({self.percent}%, run #{self.run.pk})"
        )


def version_score(employee: Employee, number: int) -> VersionScore:
    run = (
        EvaluationRun.objects.filter(
            employee=employee, brief_version=number, finished_at__isnull=False
        )
        .order_by("-finished_at", "-pk")
        .first()
    )
    return VersionScore(number=number, run=run)


def activation_check(employee: Employee, version: BriefVersion) -> str:
    """Why this version may not go live without an override, or "" when it may."""
    live = active_brief_version(employee)
    if live is not None and live.pk == version.pk:
        return f"v{version.number} is already the live brief."
    if not employee.golden_tasks.exists():
        return ""
    candidate = version_score(employee, version.number)
    command = f"./workforce manage evaluate {employee.handle} --brief-version {version.number}"
    if candidate.run is None:
        return f"Evaluate v{version.number} first: {command}"
    if live is None:
        return ""
    current = version_score(employee, live.number)
    if current.rate is not None and (candidate.rate or 0) < current.rate:
        return f"{candidate.words()}, below the live {current.words()}."
    return ""
