"""Reads for the evaluations pages: who may manage an employee, and its evaluation history."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, QuerySet

from aiworkforce.llm import OFFLINE_LABEL, offline_mode
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
    }


def _version_label(run: EvaluationRun) -> str:
    return f"v{run.brief_version}" if run.brief_version else "current brief"


def golden_digest(goldens: list[GoldenTask]) -> str:
    """What a run is measured on: which golden tasks, with which inputs and expectations."""
    cases = [[g.pk, g.input, g.expectations] for g in sorted(goldens, key=lambda g: g.pk)]
    return hashlib.sha256(json.dumps(cases, sort_keys=True).encode()).hexdigest()


def evaluation_model(employee: Employee) -> str:
    return OFFLINE_LABEL if offline_mode() else employee.model_name or settings.DEFAULT_MODEL


VERSIONS_SHOWN = 8


def brief_version_rows(employee: Employee) -> list[dict]:
    """The latest versions with their state (live, draft, earlier), their latest comparable
    evaluation and what stands between each one and going live, in a few queries."""
    versions = list(
        BriefVersion.objects.filter(employee=employee)
        .select_related("author", "activated_by")
        .order_by("-number")[:VERSIONS_SHOWN]
    )
    gate = gate_for(employee, [v.number for v in versions])
    rows = []
    for version in versions:
        is_live = gate.live is not None and gate.live.pk == version.pk
        rows.append(
            {
                "version": version,
                "state": "live" if is_live else ("draft" if version.is_draft else "earlier"),
                "score": gate.score(version.number),
                "blocked": "" if is_live else activation_check(employee, version, gate),
            }
        )
    return rows


@dataclass(frozen=True)
class VersionScore:
    """A version's latest finished evaluation on the current golden tasks and model, if any."""

    number: int
    run: EvaluationRun | None
    # It was evaluated, but only on other golden tasks or with another model.
    stale: bool = False

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


@dataclass(frozen=True)
class Gate:
    """What the activation gate compares: the live version, and each version's latest run on
    the golden tasks as they are now, with the model used now (others are not comparable)."""

    live: BriefVersion | None
    has_golden_tasks: bool
    scores: dict[int, VersionScore]

    def score(self, number: int) -> VersionScore:
        return self.scores.get(number) or VersionScore(number=number, run=None)


def gate_for(employee: Employee, numbers: list[int]) -> Gate:
    live = active_brief_version(employee)
    goldens = list(GoldenTask.objects.filter(employee=employee))
    numbers = sorted({*numbers, *([live.number] if live else [])})
    digest, model = golden_digest(goldens), evaluation_model(employee)
    finished = EvaluationRun.objects.filter(
        employee=employee, brief_version__in=numbers, finished_at__isnull=False
    )
    comparable = (
        finished.filter(golden_digest=digest, model=model)
        .order_by("brief_version", "-finished_at", "-pk")
        .distinct("brief_version")
    )
    scores = {
        run.brief_version: VersionScore(number=run.brief_version, run=run) for run in comparable
    }
    evaluated = set(finished.values_list("brief_version", flat=True).distinct())
    for number in evaluated - set(scores):
        scores[number] = VersionScore(number=number, run=None, stale=True)
    return Gate(live=live, has_golden_tasks=bool(goldens), scores=scores)


def activation_check(employee: Employee, version: BriefVersion, gate: Gate | None = None) -> str:
    """Why this version may not go live without an override, or "" when it may."""
    gate = gate or gate_for(employee, [version.number])
    live = gate.live
    if live is not None and live.pk == version.pk:
        return f"v{version.number} is already the live brief."
    if (
        version.is_draft
        and version.based_on
        and live is not None
        and version.based_on != live.number
    ):
        return (
            f"v{version.number} was drafted from v{version.based_on}, but v{live.number} is live "
            f"now: activating it would undo the changes of v{live.number}. Draft the change "
            "again from the live brief."
        )
    if not gate.has_golden_tasks:
        return ""
    command = f"./workforce manage evaluate {employee.handle} --brief-version"
    candidate = gate.score(version.number)
    if candidate.run is None:
        why = " again: the golden tasks or the model changed since" if candidate.stale else " first"
        return f"Evaluate v{version.number}{why} ({command} {version.number})."
    if live is None:
        return ""
    current = gate.score(live.number)
    if current.run is None:
        return (
            f"Evaluate the live v{live.number} too, so both are measured on the same golden "
            f"tasks and model ({command} {live.number})."
        )
    if (candidate.rate or 0) < (current.rate or 0):
        return f"{candidate.words()}, below the live {current.words()}."
    return ""
