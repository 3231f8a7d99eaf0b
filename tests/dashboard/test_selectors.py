"""The dashboard's figures: periods, scopes, and what each person may see."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.http import Http404
from django.utils import timezone

from approvals.models import ApprovalStatus
from dashboard.selectors import (
    PERIODS,
    daily_series,
    kpi_scope,
    kpis,
    needs_me,
    outcomes_by_employee,
)
from employees.models import EmployeeStatus
from employees.selectors import employees_visible_to, teams_visible_to
from tasks.models import Task, TaskSource, TaskStatus
from tests.dashboard.conftest import local_noon, make_approval, make_task
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


def scope_for(user, *, team=None, handle=""):
    return kpi_scope(
        teams=list(teams_visible_to(user)),
        employees=list(employees_visible_to(user)),
        team_id=team.pk if team else None,
        handle=handle,
    )


def test_seven_days_of_a_team(week_of_work):
    figures = kpis(scope_for(week_of_work.manager, team=week_of_work.team_a), PERIODS["7d"])
    assert (figures.finished, figures.done, figures.failed, figures.cancelled) == (7, 5, 1, 1)
    assert figures.success_rate == pytest.approx(100 * 5 / 6)
    assert figures.escalated == 1 and figures.escalation_rate == pytest.approx(100 / 7)
    # The expired request is no decision; of four decided, one was rejected.
    assert (figures.approved, figures.rejected) == (3, 1) and figures.rejection_rate == 25
    assert figures.median_cycle == timedelta(minutes=20)  # done only: the failed 5 h left out
    assert figures.median_decision == timedelta(minutes=5)  # between 4 and 6 (percentile_cont)
    assert figures.cost == Decimal("0.70") and figures.cost_per_task == Decimal("0.10")
    assert figures.spent == Decimal("1.40") and figures.cost_per_day == Decimal("0.20")
    assert figures.daily_budget == Decimal("8")  # Ava's 5 and Ben's 3
    assert figures.budget_used == pytest.approx(2.5)


def test_periods_count_what_finished_in_them(week_of_work):
    team_a = scope_for(week_of_work.manager, team=week_of_work.team_a)
    today, month = kpis(team_a, PERIODS["today"]), kpis(team_a, PERIODS["30d"])
    assert (today.done, today.finished, today.rejected, today.approved) == (1, 1, 1, 0)
    assert today.spent == Decimal("1.00") and today.days == 1
    assert today.median_cycle == timedelta(minutes=10)
    # 30 days: the task of 20 days ago is in, the one of 40 days ago is not.
    assert (month.done, month.finished) == (6, 8)
    assert month.spent == Decimal("11.39")


def test_a_viewer_of_team_a_never_sees_team_b(week_of_work):
    viewer = week_of_work.viewer_a
    everything = kpis(scope_for(viewer), PERIODS["7d"])
    assert everything.finished == 7  # team B's five tasks of today are not counted
    assert everything.spent == Decimal("1.40")
    assert everything.daily_budget == Decimal("8")
    with pytest.raises(Http404):
        scope_for(viewer, team=week_of_work.team_b)
    with pytest.raises(Http404):
        scope_for(viewer, handle="zed")
    names = {
        row.employee.handle for row in outcomes_by_employee(scope_for(viewer), PERIODS["7d"]).rows
    }
    assert names == {"ava", "ben"}
    assert sum(row.done for row in daily_series(scope_for(viewer), PERIODS["7d"])) == 5


def test_the_manager_of_both_teams_sees_both(week_of_work):
    everything = kpis(scope_for(week_of_work.manager), PERIODS["7d"])
    assert everything.finished == 12 and everything.done == 10
    assert everything.daily_budget == Decimal("15")


def test_one_employee_and_an_employee_outside_the_team(week_of_work):
    ben = kpis(scope_for(week_of_work.manager, handle="@ben"), PERIODS["7d"])
    assert (ben.done, ben.cancelled, ben.finished) == (2, 1, 3)
    assert ben.escalation_rate == 0 and ben.median_decision is None and ben.rejection_rate is None
    with pytest.raises(Http404):  # Zed is not in Support
        scope_for(week_of_work.manager, team=week_of_work.team_a, handle="zed")


def test_budget_counts_hired_employees_only(office):
    EmployeeFactory(team=office.team_a, status=EmployeeStatus.OFFBOARDED, max_cost_per_day=100)
    EmployeeFactory(team=office.team_a, status=EmployeeStatus.DRAFT, max_cost_per_day=100)
    EmployeeFactory(team=office.team_a, status=EmployeeStatus.PAUSED, max_cost_per_day=1)
    assert scope_for(office.manager, team=office.team_a).daily_budget == Decimal("9")


def test_a_scope_without_employees_has_empty_figures(office, django_assert_num_queries):
    from tests.factories import UserFactory

    loner = UserFactory(username="loner")
    scope = scope_for(loner)
    with django_assert_num_queries(0):
        figures = kpis(scope, PERIODS["30d"])
        days = daily_series(scope, PERIODS["30d"])
        outcomes = outcomes_by_employee(scope, PERIODS["30d"])
    assert figures.finished == 0 and figures.success_rate is None and figures.cost_per_task is None
    assert len(days) == 30 and not outcomes.rows


def test_daily_series_has_every_day_of_the_period(week_of_work):
    days = daily_series(scope_for(week_of_work.manager, team=week_of_work.team_a), PERIODS["7d"])
    assert [row.day for row in days] == [
        timezone.localdate() - timedelta(days=n) for n in range(6, -1, -1)
    ]
    by_age = {(timezone.localdate() - row.day).days: row for row in days}
    assert (by_age[0].done, by_age[0].spent) == (1, Decimal("1.00"))
    assert (by_age[1].done, by_age[1].cancelled, by_age[1].spent) == (1, 1, Decimal("0.40"))
    assert (by_age[2].done, by_age[3].failed, by_age[6].done) == (2, 1, 1)
    assert by_age[4].done == 0 and by_age[4].spent == 0


def test_outcomes_busiest_employee_first_and_the_rest_counted(office):
    for n in range(14):
        employee = EmployeeFactory(name=f"Worker {n:02d}", team=office.team_a)
        for _ in range(n + 1):
            make_task(employee, finished=local_noon(1))
    make_task(office.ava, TaskStatus.FAILED, finished=local_noon(1))
    chart = outcomes_by_employee(scope_for(office.manager), PERIODS["7d"])
    assert [row.employee.name for row in chart.rows[:2]] == ["Worker 13", "Worker 12"]
    assert len(chart.rows) == 12 and chart.rows[0].done == 14
    # Worker 00 and 01 (1 and 2 tasks) and Ava (1 failed) are beyond the twelve charted.
    assert chart.others == 3 and chart.others_finished == 4


def test_needs_me_counts_decisions_for_the_person_who_decides(week_of_work):
    office = week_of_work
    waiting = make_task(office.ava, TaskStatus.WAITING_APPROVAL)
    make_approval(waiting, ApprovalStatus.PENDING, decided=None, waited=timedelta(0))
    zed_waiting = make_task(office.zed, TaskStatus.WAITING_APPROVAL)
    make_approval(zed_waiting, ApprovalStatus.PENDING, decided=None, waited=timedelta(0))
    approver = needs_me(office.approver_a, employees=list(employees_visible_to(office.approver_a)))
    assert approver.approvals == 1  # Zed's request belongs to Finance
    assert approver.escalations == 1  # the open escalation on Ava's task
    viewer = needs_me(office.viewer_a, employees=list(employees_visible_to(office.viewer_a)))
    assert (viewer.approvals, viewer.escalations) == (0, 0)  # a viewer decides nothing
    assert needs_me(office.manager, employees=[]).approvals == 2


def test_needs_me_lists_recent_failures_stopped_tasks_and_paused_employees(office):
    now = timezone.now()
    recent = make_task(office.ava, TaskStatus.FAILED, finished=now - timedelta(days=1))
    make_task(office.ava, TaskStatus.FAILED, finished=now - timedelta(days=9))
    stopped = make_task(office.ben, TaskStatus.BUDGET_EXHAUSTED)
    misconfigured = make_task(office.ben, TaskStatus.MODEL_MISCONFIGURED)
    make_task(office.ben, TaskStatus.DONE, finished=now)
    make_task(office.zed, TaskStatus.FAILED, finished=now)  # Finance: not the viewer's
    office.ben.status = EmployeeStatus.PAUSED
    office.ben.status_reason = "Spend spike: $4.10 in an hour (rule: $2)."
    office.ben.status_changed_at = now
    office.ben.save()
    needs = needs_me(office.viewer_a, employees=list(employees_visible_to(office.viewer_a)))
    assert {task.pk for task in needs.problem_tasks} == {recent.pk, stopped.pk, misconfigured.pk}
    assert needs.problem_count == 3
    assert [employee.handle for employee in needs.paused] == ["ben"]
    assert needs.paused[0].status_reason.startswith("Spend spike")
    assert needs.anything


def test_needs_me_shows_the_latest_problems_and_counts_all(office):
    for _ in range(10):
        make_task(office.ava, TaskStatus.BUDGET_EXHAUSTED)
    needs = needs_me(office.manager, employees=list(employees_visible_to(office.manager)))
    assert len(needs.problem_tasks) == 8 and needs.problem_count == 10
    assert not needs.paused


def test_evaluation_runs_are_not_counted_as_work(week_of_work):
    team_a = scope_for(week_of_work.manager, team=week_of_work.team_a)
    before = kpis(team_a, PERIODS["7d"])
    for status in (TaskStatus.DONE, TaskStatus.FAILED):
        case = make_task(week_of_work.ava, status, finished=local_noon(1), cost="3.00")
        Task.objects.filter(pk=case.pk).update(source=TaskSource.EVALUATION)
    after = kpis(team_a, PERIODS["7d"])
    assert (after.finished, after.done, after.failed, after.cost) == (
        before.finished,
        before.done,
        before.failed,
        before.cost,
    )
    problems = needs_me(
        week_of_work.manager, employees=list(employees_visible_to(week_of_work.manager))
    )
    assert all(task.source != TaskSource.EVALUATION for task in problems.problem_tasks)
