"""The office floor's desks: each live state derived from real work, one query per floor."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from django.utils import timezone

from aiworkforce.audit import Actor
from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.services import approval_decide
from employees import services as employee_services
from employees.models import Employee, EmployeeStatus, ToolPolicy, WorkingWindow
from office.selectors import (
    DeskState,
    next_window_start,
    office_floor_for,
    step_activity,
)
from tasks.claims import task_claim
from tasks.loop import run_task
from tasks.models import TaskStatus
from tasks.services import task_create, task_dispatch
from tests.factories import (
    EmployeeFactory,
    MembershipFactory,
    TeamFactory,
    ToolGrantFactory,
    UserFactory,
    assigned_task,
)
from tests.fakes.openai_server import dynamic, error, reply
from tests.office.conftest import EMAIL_SOP, office_hours

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("tests")
# Saturday 01:00 in Berlin; Monday 10:00 in Berlin.
SATURDAY_NIGHT = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
MONDAY_MORNING = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _desk(user, employee: Employee, now: datetime | None = None):
    floor = office_floor_for(user, now=now or timezone.now())
    [desk] = [d for team in floor.teams for d in team.desks if d.employee_id == employee.pk]
    return desk


@pytest.fixture
def viewer(clerk):
    """A person who may see the clerk's team (and only that team)."""
    user = UserFactory(username="viewer")
    MembershipFactory(team=clerk.team, user=user, role="viewer")
    return user


def test_an_employee_without_work_is_idle(viewer, clerk):
    desk = _desk(viewer, clerk)
    assert (desk.state, desk.label, desk.task_id) == (DeskState.IDLE, "Idle", None)
    assert not desk.is_shadow and not desk.is_draft


def test_a_draft_says_so_and_a_shadow_keeps_its_badge(viewer, clerk):
    draft = EmployeeFactory(team=clerk.team, status=EmployeeStatus.DRAFT)
    shadow = EmployeeFactory(team=clerk.team, status=EmployeeStatus.SHADOW)
    desk = _desk(viewer, draft)
    assert desk.state == DeskState.DRAFT and desk.is_draft
    assert desk.label == "Draft — activate to start work"
    desk = _desk(viewer, shadow)
    assert desk.state == DeskState.IDLE and desk.is_shadow


def test_a_paused_employee_says_why(viewer, clerk):
    assigned_task(clerk)
    employee_services.employee_pause(
        employee=clerk, actor=SYSTEM, reason="Spend spike: $4.10 in 10 minutes."
    )
    desk = _desk(viewer, clerk)
    assert (desk.state, desk.label) == (DeskState.PAUSED, "Paused")
    assert desk.detail == "Spend spike: $4.10 in 10 minutes."
    employee_services.employee_activate(employee=clerk, actor=SYSTEM)
    assert _desk(viewer, clerk).state == DeskState.QUEUED  # its task is back in the queue


def test_a_pause_without_a_reason_says_none_was_given(viewer, clerk):
    employee_services.employee_pause(employee=clerk, actor=SYSTEM)
    assert _desk(viewer, clerk).detail == "No reason was given."


def test_a_queued_task_is_about_to_start(viewer, clerk):
    task = assigned_task(clerk, "Please refund order 48213.")
    desk = _desk(viewer, clerk)
    assert (desk.state, desk.label) == (DeskState.QUEUED, f"About to start #{task.pk}")
    assert desk.task_title == "Please refund order 48213." and desk.open_tasks == 1


def test_a_running_task_shows_its_current_step(model_server, viewer, clerk):
    model_server.enqueue(
        reply(tool_calls=[("create_task", {"title": "Follow up", "instructions": "Tomorrow"})]),
        reply("Done."),
    )
    task = assigned_task(clerk)
    seen = []

    def on_step(step) -> None:
        desk = _desk(viewer, clerk)
        seen.append((step.kind, desk.state, desk.label, desk.detail))

    assert run_task(task.pk, on_step=on_step) == TaskStatus.DONE
    working = f"Working on #{task.pk}"
    assert ("llm_call", DeskState.WORKING, working, "calling create_task") in seen
    assert ("tool_call", DeskState.WORKING, working, "thinking") in seen
    # Done: the follow-up it created is what the desk shows next.
    assert _desk(viewer, clerk).state == DeskState.QUEUED


def test_a_claimed_task_without_steps_is_starting(viewer, clerk):
    task = assigned_task(clerk)
    assert task_claim(task_id=task.pk) is not None
    desk = _desk(viewer, clerk)
    assert (desk.state, desk.label, desk.detail) == (
        DeskState.WORKING,
        f"Working on #{task.pk}",
        "starting",
    )


def test_an_approved_call_being_made_says_so(settings, viewer, clerk):
    settings.OPENAI_API_KEY = ""  # the offline engine follows the SOP: an email to approve
    clerk.sop = EMAIL_SOP
    clerk.save()
    task = assigned_task(clerk, "From: dana@example.com\n\nWhere is my order?")
    assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL
    desk = _desk(viewer, clerk)
    assert (desk.state, desk.label) == (
        DeskState.WAITING_APPROVAL,
        f"Waiting for approval on #{task.pk}",
    )
    assert desk.detail == "Waiting for approval of send_email."
    approval = ApprovalRequest.objects.get(task=task, status=ApprovalStatus.PENDING)
    approval_decide(approval=approval, user=UserFactory(), decision=ApprovalStatus.APPROVED)
    assert task_claim(task_id=task.pk) is not None  # a worker picks it up again
    desk = _desk(viewer, clerk)
    assert (desk.state, desk.detail) == (DeskState.WORKING, "calling send_email")


def test_an_escalated_task(model_server, viewer, clerk):
    model_server.enqueue(
        reply(
            tool_calls=[
                ("escalate_to_human", {"summary": "Refund over limit", "options": ["Yes", "No"]})
            ]
        )
    )
    task = assigned_task(clerk)
    assert run_task(task.pk) == TaskStatus.WAITING_ESCALATION
    desk = _desk(viewer, clerk)
    assert (desk.state, desk.label) == (DeskState.ESCALATED, f"Escalated #{task.pk} to a person")


def test_a_task_stopped_on_its_budget(model_server, settings, viewer, clerk):
    settings.MODEL_PRICES = {"gpt-4o-mini": (Decimal("0"), Decimal("1000"))}
    clerk.max_cost_per_task = Decimal("0.01")
    clerk.save()
    model_server.enqueue(reply("never asked"))
    task = assigned_task(clerk)
    assert run_task(task.pk) == TaskStatus.BUDGET_EXHAUSTED
    desk = _desk(viewer, clerk)
    assert (desk.state, desk.label) == (DeskState.BUDGET, f"Stopped on a budget (#{task.pk})")
    assert desk.detail  # the refusal in words, as the inbox shows it


def test_a_task_stopped_by_the_model(model_server, viewer, clerk):
    model_server.enqueue(dynamic(lambda body: error(500, "upstream broke")))
    task = assigned_task(clerk)
    assert run_task(task.pk) == TaskStatus.MODEL_UNAVAILABLE
    desk = _desk(viewer, clerk)
    assert desk.state == DeskState.MODEL and "answered 500" in desk.detail


def test_waiting_for_a_delegated_request(model_server, viewer, clerk):
    lead = EmployeeFactory(team=clerk.team, handle="lead", is_manager=True)
    ToolGrantFactory(employee=lead, tool_name="delegate", scope={}, policy=ToolPolicy.AUTO)
    EmployeeFactory(team=clerk.team, handle="helper", reports_to=lead)
    model_server.enqueue(
        reply(
            tool_calls=[
                ("delegate", {"to": "helper", "instructions": "Do it.", "expected_result": "Ok."})
            ]
        )
    )
    task = assigned_task(lead)
    assert run_task(task.pk) == TaskStatus.WAITING_CHILDREN
    desk = _desk(viewer, lead)
    assert (desk.state, desk.label) == (
        DeskState.DELEGATED,
        f"Waiting for a delegated request (#{task.pk})",
    )


def test_the_most_pressing_task_is_the_one_shown(model_server, viewer, clerk):
    queued = assigned_task(clerk, "Later")
    model_server.enqueue(
        reply(tool_calls=[("escalate_to_human", {"summary": "Help", "options": ["A"]})])
    )
    escalated = assigned_task(clerk, "Now")
    assert run_task(escalated.pk) == TaskStatus.WAITING_ESCALATION
    desk = _desk(viewer, clerk)
    assert desk.task_id == escalated.pk and desk.open_tasks == 2
    assert task_claim(task_id=queued.pk) is not None
    assert _desk(viewer, clerk).task_id == queued.pk  # working beats waiting


def test_off_hours_says_when_work_resumes_in_the_employees_time_zone(viewer, clerk):
    office_hours(clerk)
    desk = _desk(viewer, clerk, SATURDAY_NIGHT)
    assert desk.state == DeskState.OFF_HOURS
    assert desk.label == "Off hours — resumes Mon 09:00 Europe/Berlin"
    assert _desk(viewer, clerk, MONDAY_MORNING).state == DeskState.IDLE


def test_work_waiting_for_hours_is_named_on_an_off_hours_desk(viewer, clerk):
    office_hours(clerk)
    task, _ = task_create(employee=clerk, title="", input="Cold email", dispatch=False)
    assert task_dispatch(task=task, now=SATURDAY_NIGHT) == TaskStatus.WAITING_HOURS
    desk = _desk(viewer, clerk, SATURDAY_NIGHT)
    assert desk.state == DeskState.OFF_HOURS and desk.task_id == task.pk
    assert desk.detail == f"#{task.pk} waits for working hours"


def test_the_next_window_later_today_tomorrow_or_never():
    employee = Employee(timezone="Europe/Berlin", always_on=False)
    windows = [
        WorkingWindow(weekday=0, start=time(9), end=time(12)),
        WorkingWindow(weekday=0, start=time(14), end=time(18)),
        WorkingWindow(weekday=2, start=time(9), end=time(17)),
    ]
    monday_1pm = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Berlin
    assert f"{next_window_start(employee, monday_1pm, windows):%a %H:%M}" == "Mon 14:00"
    monday_8pm = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    assert f"{next_window_start(employee, monday_8pm, windows):%a %H:%M}" == "Wed 09:00"
    wednesday_6pm = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    assert f"{next_window_start(employee, wednesday_6pm, windows):%a %H:%M}" == "Mon 09:00"
    assert next_window_start(employee, monday_1pm, []) is None


@pytest.mark.parametrize(
    ("kind", "tool", "status", "calls", "expected"),
    [
        (None, None, None, None, "starting"),
        ("llm_call", None, None, ["send_email", "recall"], "calling send_email, recall"),
        ("llm_call", None, None, [], "writing the answer"),
        ("tool_call", "http_request", "started", None, "calling http_request"),
        ("tool_call", "http_request", "ok", None, "thinking"),
        ("escalation", None, None, None, "thinking"),
        ("final", None, None, None, "finishing"),
    ],
)
def test_step_activity_in_words(kind, tool, status, calls, expected):
    assert step_activity(kind, tool, status, calls) == expected


# --- grouping and visibility ---------------------------------------------------------------------


def test_desks_are_grouped_by_team_and_a_viewer_never_sees_another_team(viewer, clerk):
    other = TeamFactory(name="Zeta finance")
    stranger = EmployeeFactory(team=other, name="Stranger")
    assigned_task(stranger)
    colleague = EmployeeFactory(team=clerk.team, name="Aaron")
    EmployeeFactory(team=clerk.team, status=EmployeeStatus.OFFBOARDED, name="Gone")
    floor = office_floor_for(viewer, now=timezone.now())
    assert [(t.name, [d.name for d in t.desks]) for t in floor.teams] == [
        (clerk.team.name, [colleague.name, clerk.name])
    ]
    everyone = office_floor_for(UserFactory(is_superuser=True), now=timezone.now())
    assert [t.name for t in everyone.teams] == sorted([clerk.team.name, other.name])


def test_a_team_without_employees_is_on_the_floor_empty(viewer, clerk):
    empty = TeamFactory(name="Aardvark")
    MembershipFactory(team=empty, user=viewer)
    floor = office_floor_for(viewer, now=timezone.now())
    assert [(t.name, len(t.desks)) for t in floor.teams] == [("Aardvark", 0), (clerk.team.name, 1)]


def test_a_person_without_a_team_sees_no_desks(clerk):
    floor = office_floor_for(UserFactory(), now=timezone.now())
    assert floor.teams == [] and floor.summary == "No desks"


def test_the_summary_counts_desks_per_state(viewer, clerk):
    EmployeeFactory(team=clerk.team, status=EmployeeStatus.DRAFT)
    EmployeeFactory(team=clerk.team)
    busy = EmployeeFactory(team=clerk.team)
    task_claim(task_id=assigned_task(busy).pk)
    assert office_floor_for(viewer, now=timezone.now()).summary == "1 working, 1 draft, 2 idle"


# --- cost: one statement whatever the number of employees ---------------------------------------


@pytest.mark.parametrize("employees", [5, 50])
def test_the_whole_floor_is_one_query(django_assert_num_queries, busy_team, employees):
    team = TeamFactory()
    busy_team(team, employees)
    user = UserFactory()
    MembershipFactory(team=team, user=user)
    with django_assert_num_queries(1):
        floor = office_floor_for(user, now=timezone.now())
    assert floor.desk_count == employees
    assert floor.counts[DeskState.WAITING_APPROVAL] and floor.counts[DeskState.WORKING]
