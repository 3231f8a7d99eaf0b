"""Golden tasks and evaluations: every write of the app.

An evaluation runs each golden task as a real task of the employee with source "evaluation",
through the real loop (tasks.loop.run_task), which then only proposes what would leave our
database (tasks.loop.state.Turn.proposes) and asks nobody; a case that parks anyway (its
budget, the loop breaker) is cancelled when it has been checked.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection, transaction
from django.db.models import Max
from django.utils import timezone

from aiworkforce.audit import Actor, audit_log
from employees.models import BRIEF_FIELDS, BriefVersion, Employee, EmployeeStatus
from employees.selectors import active_brief_version
from evaluations.expectations import ESCALATE_TOOL, Outcome, expectations_problem, failures
from evaluations.models import CaseResult, EvaluationRun, GoldenTask
from evaluations.selectors import evaluation_model, golden_digest
from tasks.loop import run_task
from tasks.models import Step, StepKind, Task, TaskSource, TaskStatus
from tasks.services import task_cancel, task_create

# Tool-call outcomes that count as "the employee called it" (what a person could approve).
ACCEPTED = {"ok", "proposed"}
# An evaluation only proposes, so an employee may be measured before it is hired and while it
# is paused (the way back from an anomaly pause is often a better brief, which must pass).
EVALUABLE = {
    EmployeeStatus.ACTIVE,
    EmployeeStatus.SHADOW,
    EmployeeStatus.PAUSED,
    EmployeeStatus.DRAFT,
}


class EvaluationRefused(Exception):
    """An evaluation that cannot start, with the reason in words."""


def golden_task_create(
    *, employee: Employee, title: str, input: str, expectations: dict, user=None, source_task=None
) -> GoldenTask:
    """Add a golden task, its expectations checked against the schema."""
    problem = expectations_problem(expectations)
    if problem:
        raise ValidationError(problem)
    if not (input or "").strip():
        raise ValidationError("A golden task needs an input.")
    with transaction.atomic():
        golden = GoldenTask.objects.create(
            employee=employee,
            title=(title or input.splitlines()[0]).strip()[:200],
            input=input,
            expectations=expectations,
            source_task=source_task,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        audit_log(
            action="golden_task.created",
            actor=Actor.for_user(user) if user else Actor.system("evaluations"),
            subject=golden,
            data={"employee": employee.handle, "from_task": getattr(source_task, "pk", None)},
        )
    return golden


def expectations_from_task(task: Task) -> dict:
    """What a person approved on a finished task: each tool call carried out, with its arguments."""
    calls = [
        {"tool": step.payload["name"], "arguments": step.payload.get("arguments") or {}}
        for step in Step.objects.filter(task=task, kind=StepKind.TOOL_CALL).order_by("seq")
        if step.payload.get("status") in ACCEPTED
        and isinstance(step.payload.get("arguments"), dict)
    ]
    expectations: dict = {"calls": calls} if calls else {"escalates": False}
    if task.status == TaskStatus.DONE and not calls:
        expectations["max_steps"] = max(
            1, Step.objects.filter(task=task, kind=StepKind.LLM_CALL).count()
        )
    return expectations


def golden_task_from_task(*, task: Task, user) -> GoldenTask:
    """One click on a finished task: its input, and the calls made (and approved) as expected."""
    if task.status != TaskStatus.DONE:
        raise ValidationError("Only a task that finished successfully can become a golden task.")
    if task.source == TaskSource.EVALUATION:
        raise ValidationError("This task is an evaluation case already.")
    return golden_task_create(
        employee=task.employee,
        title=task.title,
        input=task.input,
        expectations=expectations_from_task(task),
        user=user,
        source_task=task,
    )


def brief_version_for(*, employee: Employee, number: int | None) -> BriefVersion | None:
    """The version to evaluate: the one asked for (refused if unknown), else the live one."""
    versions = BriefVersion.objects.filter(employee=employee)
    if number is None:
        return active_brief_version(employee) or versions.order_by("-number").first()
    version = versions.filter(number=number).first()
    if version is None:
        last = versions.aggregate(n=Max("number"))["n"]
        known = f"versions 1 to {last}" if last else "no saved versions"
        raise EvaluationRefused(f"@{employee.handle} has no brief version {number} ({known}).")
    return version


@dataclass(frozen=True)
class CaseReport:
    result: CaseResult
    title: str


def evaluable_cases(employee: Employee) -> list[GoldenTask]:
    """The golden tasks to run, or EvaluationRefused saying why there is nothing to run."""
    if employee.status not in EVALUABLE:
        raise EvaluationRefused(
            f"@{employee.handle} is {employee.get_status_display().lower()}: "
            "an offboarded employee is not evaluated."
        )
    goldens = list(GoldenTask.objects.filter(employee=employee).order_by("id"))
    if not goldens:
        raise EvaluationRefused(f"@{employee.handle} has no golden tasks to evaluate.")
    return goldens


def evaluation_run(
    *,
    employee: Employee,
    brief_version: int | None = None,
    concurrency: int = 1,
    progress: Callable[[int, int, CaseResult], None] | None = None,
    queued: EvaluationRun | None = None,
) -> EvaluationRun:
    """Run every golden task of the employee in shadow and record each case's result.

    `queued` is a run the page queued (evaluation_queue): it is taken once, so a job that
    django-q2 delivers again finds it taken and runs nothing.
    """
    goldens = evaluable_cases(employee)
    if queued is not None:
        brief_version = queued.brief_version
    version = brief_version_for(employee=employee, number=brief_version)
    concurrency = max(1, min(concurrency, len(goldens)))
    measured = {
        "brief_version": version.number if version else None,
        "model": evaluation_model(employee),
        "concurrency": concurrency,
        "cases": len(goldens),
        "golden_digest": golden_digest(goldens),
    }
    if queued is None:
        run = EvaluationRun.objects.create(employee=employee, claimed_at=timezone.now(), **measured)
    else:
        taken = EvaluationRun.objects.filter(pk=queued.pk, claimed_at__isnull=True).update(
            claimed_at=timezone.now(), **measured
        )
        if not taken:
            raise EvaluationRefused(f"Evaluation run #{queued.pk} was taken already.")
        run = EvaluationRun.objects.get(pk=queued.pk)
    results: list[CaseResult] = []

    def done(result: CaseResult) -> None:
        results.append(result)
        if progress:
            progress(len(results), len(goldens), result)

    if concurrency == 1:
        for golden in goldens:
            done(_run_case(run, golden, version))
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = [pool.submit(_threaded_case, run, golden, version) for golden in goldens]
            for future in as_completed(futures):
                done(future.result())
    passed = sum(1 for result in results if result.passed)
    EvaluationRun.objects.filter(pk=run.pk).update(passed=passed, finished_at=timezone.now())
    run.refresh_from_db()
    audit_log(
        action="evaluation.finished",
        actor=Actor.system("evaluations"),
        subject=run,
        data={"employee": employee.handle, "cases": run.cases, "passed": passed},
    )
    return run


def _threaded_case(run, golden, version) -> CaseResult:
    close_old_connections()
    try:
        return _run_case(run, golden, version)
    finally:
        connection.close()


def _with_version(version: BriefVersion | None) -> Callable[[Task], None] | None:
    if version is None:
        return None

    def prepare(task: Task) -> None:
        for name in BRIEF_FIELDS:
            setattr(task.employee, name, version.brief.get(name, ""))
        task.employee.sop = version.sop

    return prepare


def _run_case(run: EvaluationRun, golden: GoldenTask, version: BriefVersion | None) -> CaseResult:
    """One golden task through the loop, checked, and closed if it parked."""
    task, _ = task_create(
        employee=run.employee,
        title=golden.title,
        input=golden.input,
        source=TaskSource.EVALUATION,
        urgent=True,
        dispatch=False,
        idempotency_key=f"evaluation:{run.pk}:{golden.pk}",
    )
    run_task(task.pk, worker=f"evaluation-{run.pk}", prepare=_with_version(version))
    task.refresh_from_db()
    status, reason = task.status, task.status_reason
    if not task.is_finished:
        task_cancel(
            task=task,
            actor=Actor.system("evaluations"),
            reason=f"Evaluation case ended: {task.get_status_display().lower()}",
            wake_parent=False,
        )
        task.refresh_from_db()
    outcome = outcome_of(task, status)
    missed = failures(golden.expectations, outcome)
    if status != TaskStatus.DONE:
        # Parked by the loop itself (the loop breaker, the budget, a refusal): not done.
        missed.insert(0, f"did not finish: {reason or status}")
    return CaseResult.objects.create(
        run=run,
        golden_task=golden,
        passed=not missed,
        failures=missed,
        task=task,
        status=status,
        steps=outcome.steps,
        cost=task.cost,
    )


def outcome_of(task: Task, status: str) -> Outcome:
    """What the case did, read from its steps."""
    outcome = Outcome(answer=task.result, cost=task.cost, status=status)
    for kind, payload in (
        Step.objects.filter(task=task).order_by("seq").values_list("kind", "payload")
    ):
        if kind == StepKind.LLM_CALL:
            outcome.steps += 1
        elif kind == StepKind.TOOL_CALL and payload.get("status") != "started":
            outcome.attempted.append(payload.get("name", ""))
            if payload.get("status") in ACCEPTED:
                outcome.calls.append((payload.get("name", ""), payload.get("arguments")))
    # Escalating is the model's own call (proposed); the loop breaker's is not finishing.
    outcome.escalated = ESCALATE_TOOL in dict(outcome.calls)
    return outcome


# An evaluation asked for from the page runs on the worker cluster, a few cases at a time.
PAGE_CONCURRENCY = 4


def evaluation_running(employee: Employee) -> EvaluationRun | None:
    """A run of this employee still going (one killed mid-way stops counting after Q_TIMEOUT)."""
    since = timezone.now() - timedelta(seconds=settings.Q_CLUSTER["timeout"])
    return (
        EvaluationRun.objects.filter(
            employee=employee, finished_at__isnull=True, started_at__gte=since
        )
        .order_by("-started_at")
        .first()
    )


def evaluation_queue(*, employee: Employee, brief_version: int, user) -> EvaluationRun:
    """Queue a run of the golden tasks against one version for the worker cluster (the page's
    button). One at a time per employee: the run row is written here, under the employee's
    lock, so a second click finds it."""
    from django_q.tasks import async_task  # as tasks.services does: not at app loading

    with transaction.atomic():
        employee = Employee.objects.select_for_update().get(pk=employee.pk)
        goldens = evaluable_cases(employee)
        version = brief_version_for(employee=employee, number=brief_version)
        running = evaluation_running(employee)
        if running is not None:
            raise EvaluationRefused(
                f"An evaluation of @{employee.handle} is already running (run #{running.pk}); "
                "wait for it to finish."
            )
        run = EvaluationRun.objects.create(
            employee=employee,
            brief_version=version.number,
            model=evaluation_model(employee),
            concurrency=PAGE_CONCURRENCY,
            cases=len(goldens),
            golden_digest=golden_digest(goldens),
        )
        audit_log(
            action="evaluation.requested",
            actor=Actor.for_user(user),
            subject=employee,
            data={"handle": employee.handle, "version": version.number, "run": run.pk},
        )
        transaction.on_commit(
            lambda: async_task(
                "evaluations.jobs.evaluate",
                run.pk,
                task_name=f"evaluate {employee.handle} v{version.number}",
                group="evaluations",
            )
        )
    return run
