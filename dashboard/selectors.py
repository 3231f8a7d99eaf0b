"""Reads of the manager's dashboard: what needs a person now, and the KPIs of a period and scope.

Every figure is aggregated in SQL over the employees the person may see (employees_visible_to):
one statement per figure family, whatever the number of tasks, so the page stays fast at scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDay
from django.http import Http404
from django.utils import timezone

from anomalies.selectors import anomaly_pauses_current
from approvals.models import ApprovalRequest, ApprovalStatus, Escalation
from approvals.selectors import approvals_pending_for, escalations_open_for
from dashboard.aggregates import MedianDuration
from employees.models import Employee, EmployeeStatus, Team
from tasks.models import FINISHED_STATUSES, DailySpend, Task, TaskSource, TaskStatus

# --- periods ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    days: int

    def start(self, now: datetime) -> datetime:
        """Local midnight `days - 1` days before `now`'s day: today, or the last 7 or 30 days."""
        local = timezone.localtime(now)
        first = local.date() - timedelta(days=self.days - 1)
        return datetime.combine(first, time.min, tzinfo=local.tzinfo)

    def days_of(self, now: datetime) -> list[date]:
        first = self.start(now).date()
        return [first + timedelta(days=n) for n in range(self.days)]


PERIODS = {
    period.key: period
    for period in (
        Period("today", "Today", 1),
        Period("7d", "7 days", 7),
        Period("30d", "30 days", 30),
    )
}
DEFAULT_PERIOD = "7d"

# Tasks that stopped and wait for a person: they stay on the list until someone acts.
STOPPED_STATUSES = (
    TaskStatus.BUDGET_EXHAUSTED,
    TaskStatus.MODEL_MISCONFIGURED,
    TaskStatus.MODEL_UNAVAILABLE,
)
# Failed tasks are shown for this long after they failed.
RECENT_FAILURES = timedelta(days=7)
PROBLEM_TASKS_SHOWN = 8
# Employees drawn in the outcomes chart; the rest are counted in "others" below it.
EMPLOYEES_CHARTED = 12
# Employees whose daily budget counts: the ones hired and not offboarded.
BUDGETED_STATUSES = (EmployeeStatus.ACTIVE, EmployeeStatus.SHADOW, EmployeeStatus.PAUSED)


# --- scope --------------------------------------------------------------------------------------


@dataclass
class KpiScope:
    """What the figures are about: all the person's employees, one team's, or one employee."""

    employees: list[Employee]
    team: Team | None = None
    employee: Employee | None = None

    @property
    def label(self) -> str:
        if self.employee is not None:
            return self.employee.name
        if self.team is not None:
            return self.team.name
        return "All my teams"

    @property
    def employee_ids(self) -> list[int]:
        return [employee.pk for employee in self.employees]

    @property
    def daily_budget(self) -> Decimal:
        return sum(
            (e.max_cost_per_day for e in self.employees if e.status in BUDGETED_STATUSES),
            Decimal("0"),
        )


def kpi_scope(
    *, teams: list[Team], employees: list[Employee], team_id: int | None, handle: str
) -> KpiScope:
    """The scope among the teams and employees a person may see; a team or employee outside
    them is not found (404), never shown, so a guessed id tells nothing."""
    team = None
    if team_id is not None:
        team = next((t for t in teams if t.pk == team_id), None)
        if team is None:
            raise Http404("No such team.")
    if handle:
        employee = next((e for e in employees if e.handle == handle.lstrip("@")), None)
        if employee is None or (team is not None and employee.team_id != team.pk):
            raise Http404("No such employee.")
        return KpiScope(employees=[employee], team=team, employee=employee)
    if team is not None:
        return KpiScope(employees=[e for e in employees if e.team_id == team.pk], team=team)
    return KpiScope(employees=list(employees))


# --- what needs me now --------------------------------------------------------------------------


@dataclass
class NeedsMe:
    approvals: int
    escalations: int
    problem_tasks: list[Task]
    problem_count: int
    paused: list[Employee]  # those an anomaly rule paused first (each with .anomaly_pause)

    @property
    def anything(self) -> bool:
        return bool(self.approvals or self.escalations or self.problem_count or self.paused)

    @property
    def paused_by_rule(self) -> list[Employee]:
        return [e for e in self.paused if e.anomaly_pause is not None]

    @property
    def paused_otherwise(self) -> list[Employee]:
        return [e for e in self.paused if e.anomaly_pause is None]


def needs_me(user, *, employees: list[Employee], now: datetime | None = None) -> NeedsMe:
    """Approvals and escalations waiting for the person's decision (their deciding teams), and,
    among `employees` (the ones the person may see), tasks that failed lately or stopped and
    wait for a person, and the paused employees: those an anomaly rule paused first (the rule
    stopped them on its own: a person should look before anything else), latest first."""
    now = now or timezone.now()
    # Among the given employees (the person's: employees_visible_to), so the plan is one index
    # range per employee on (employee, finished_at) or the status index, never a join per row.
    problems = (
        Task.objects.filter(employee_id__in=[employee.pk for employee in employees])
        .exclude(source=TaskSource.EVALUATION)
        .filter(
            Q(status__in=STOPPED_STATUSES)
            | Q(status=TaskStatus.FAILED, finished_at__gte=now - RECENT_FAILURES)
        )
        .select_related("employee")
        .defer("input", "result", "budget_overrides")
        .order_by("-updated_at", "-pk")
    )
    paused = [e for e in employees if e.status == EmployeeStatus.PAUSED]
    by_rule = anomaly_pauses_current(paused)
    for employee in paused:
        employee.anomaly_pause = by_rule.get(employee.pk)
    paused.sort(key=lambda e: e.status_changed_at or e.updated_at, reverse=True)
    paused.sort(key=lambda e: e.anomaly_pause is None)  # stable: latest first within each
    return NeedsMe(
        approvals=approvals_pending_for(user).count(),
        escalations=escalations_open_for(user).count(),
        problem_tasks=list(problems[:PROBLEM_TASKS_SHOWN]),
        problem_count=problems.count(),
        paused=paused,
    )


# --- KPIs ---------------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> float | None:
    """Percent, or None when there is nothing to divide (shown as a dash, not as 0 %)."""
    return 100 * part / whole if whole else None


@dataclass
class Kpis:
    finished: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    escalated: int = 0
    cost: Decimal = Decimal("0")
    median_cycle: timedelta | None = None
    approved: int = 0
    rejected: int = 0
    median_decision: timedelta | None = None
    spent: Decimal = Decimal("0")
    days: int = 1
    daily_budget: Decimal = Decimal("0")

    @property
    def success_rate(self) -> float | None:
        """Done among the tasks that ended on their own (cancelled ones were stopped by people)."""
        return _ratio(self.done, self.done + self.failed)

    @property
    def escalation_rate(self) -> float | None:
        return _ratio(self.escalated, self.finished)

    @property
    def rejection_rate(self) -> float | None:
        return _ratio(self.rejected, self.approved + self.rejected)

    @property
    def decided(self) -> int:
        return self.approved + self.rejected

    @property
    def cost_per_task(self) -> Decimal | None:
        return self.cost / self.finished if self.finished else None

    @property
    def cost_per_day(self) -> Decimal:
        return self.spent / self.days

    @property
    def budget_used(self) -> float | None:
        """The average day's spend as a percentage of the scope's daily budgets."""
        return _ratio(self.cost_per_day, self.daily_budget)


def _finished_tasks(scope: KpiScope, start: datetime):
    # Evaluation runs (golden tasks) are tests of an employee, not its work: the same condition
    # as task_work_finished_idx's, so the figures still come from that index alone.
    return Task.objects.filter(
        employee_id__in=scope.employee_ids,
        finished_at__gte=start,
        status__in=FINISHED_STATUSES,
    ).exclude(source=TaskSource.EVALUATION)


def _outcome_counts() -> dict:
    # Counting a column of task_work_finished_idx (not the row) keeps the scan index-only.
    return {
        "done": Count("finished_at", filter=Q(status=TaskStatus.DONE)),
        "failed": Count("finished_at", filter=Q(status=TaskStatus.FAILED)),
        "cancelled": Count("finished_at", filter=Q(status=TaskStatus.CANCELLED)),
    }


def kpis(scope: KpiScope, period: Period, *, now: datetime | None = None) -> Kpis:
    """The period's figures for the scope, in three statements (tasks, approvals, spend).

    Tasks count in the period they finished in; approvals in the one they were decided in;
    spend is the budget ledger's (DailySpend: money actually spent, in each employee's day).
    """
    now = now or timezone.now()
    start = period.start(now)
    if not scope.employees:
        return Kpis(days=period.days)
    tasks = _finished_tasks(scope, start).aggregate(
        finished=Count("finished_at"),
        **_outcome_counts(),
        escalated=Count("finished_at", filter=Q(pk__in=Escalation.objects.values("task_id"))),
        cost=Sum("cost", default=Decimal("0")),
        median_cycle=MedianDuration(
            F("finished_at") - F("created_at"), filter=Q(status=TaskStatus.DONE)
        ),
    )
    decisions = ApprovalRequest.objects.filter(
        employee_id__in=scope.employee_ids,
        decided_at__gte=start,
        status__in=(ApprovalStatus.APPROVED, ApprovalStatus.REJECTED),
    ).aggregate(
        approved=Count("pk", filter=Q(status=ApprovalStatus.APPROVED)),
        rejected=Count("pk", filter=Q(status=ApprovalStatus.REJECTED)),
        median_decision=MedianDuration(F("decided_at") - F("created_at")),
    )
    spent = DailySpend.objects.filter(
        employee_id__in=scope.employee_ids, day__gte=start.date()
    ).aggregate(spent=Sum("spent", default=Decimal("0")))["spent"]
    return Kpis(
        **tasks, **decisions, spent=spent, days=period.days, daily_budget=scope.daily_budget
    )


# --- charts -------------------------------------------------------------------------------------


@dataclass
class DayRow:
    day: date
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    spent: Decimal = Decimal("0")


def daily_series(scope: KpiScope, period: Period, *, now: datetime | None = None) -> list[DayRow]:
    """Per day of the period: tasks finished by outcome, and what was spent (two statements)."""
    now = now or timezone.now()
    rows = {day: DayRow(day=day) for day in period.days_of(now)}
    if not scope.employees:
        return list(rows.values())
    start = period.start(now)
    by_day = (
        _finished_tasks(scope, start)
        .annotate(day=TruncDay("finished_at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(**_outcome_counts())
        .order_by()
    )
    for row in by_day:
        target = rows.get(timezone.localtime(row["day"]).date())
        if target is not None:
            target.done, target.failed, target.cancelled = (
                row["done"],
                row["failed"],
                row["cancelled"],
            )
    spend = (
        DailySpend.objects.filter(employee_id__in=scope.employee_ids, day__gte=start.date())
        .values("day")
        .annotate(spent=Sum("spent"))
        .order_by()
    )
    for row in spend:
        if row["day"] in rows:
            rows[row["day"]].spent = row["spent"]
    return list(rows.values())


@dataclass
class EmployeeOutcomes:
    employee: Employee
    done: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled


@dataclass
class OutcomeChart:
    rows: list[EmployeeOutcomes] = field(default_factory=list)
    others: int = 0  # employees with finished tasks beyond those charted
    others_finished: int = 0


def outcomes_by_employee(
    scope: KpiScope, period: Period, *, now: datetime | None = None
) -> OutcomeChart:
    """Tasks finished by outcome for each employee with any, busiest first (one statement)."""
    now = now or timezone.now()
    if not scope.employees:
        return OutcomeChart()
    by_id = {employee.pk: employee for employee in scope.employees}
    counted = (
        _finished_tasks(scope, period.start(now))
        .values("employee_id")
        .annotate(**_outcome_counts())
        .order_by()
    )
    rows = [
        EmployeeOutcomes(
            employee=by_id[row["employee_id"]],
            done=row["done"],
            failed=row["failed"],
            cancelled=row["cancelled"],
        )
        for row in counted
    ]
    rows.sort(key=lambda r: (-r.finished, r.employee.name))
    rest = rows[EMPLOYEES_CHARTED:]
    return OutcomeChart(
        rows=rows[:EMPLOYEES_CHARTED],
        others=len(rest),
        others_finished=sum(r.finished for r in rest),
    )
