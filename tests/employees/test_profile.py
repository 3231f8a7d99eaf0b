"""The employee profile: what a viewer reads, what a manager may do, and what neither can break."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aiworkforce.audit import Actor
from employees.models import (
    Duty,
    Employee,
    EmployeeStatus,
    TeamRole,
    ToolGrant,
    ToolPolicy,
    WorkingWindow,
)
from employees.profile import words
from employees.profile.selectors import (
    BriefDiffError,
    brief_diff,
    budget_today,
    duty_rows,
    profile_context,
)
from employees.services import employee_create, employee_update
from tasks.models import DailySpend, Task, TaskSource, TaskStatus
from tasks.services import task_create
from tests.factories import (
    EmployeeFactory,
    MembershipFactory,
    TeamFactory,
    ToolGrantFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("tests")
HX = {"HX-Request": "true"}


@pytest.fixture
def team():
    return TeamFactory(name="Support")


@pytest.fixture
def ava(team):
    employee = Employee(
        name="Ava",
        handle="ava",
        team=team,
        role_title="Support triage specialist",
        job_description="Reads new support requests and answers the simple ones.",
        goals="Every request gets a first answer within one hour.",
        tone="Warm and brief.",
        sop=[
            {"text": "Read the request."},
            {
                "text": "Reply to the customer.",
                "when": ["order"],
                "tool": {
                    "name": "send_email",
                    "arguments": {"to": ["{first_email}"], "subject": "We have your request"},
                },
            },
        ],
        status=EmployeeStatus.ACTIVE,
    )
    employee_create(employee=employee, actor=ACTOR)
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.NEEDS_APPROVAL,
    )
    ToolGrantFactory(employee=employee, tool_name="escalate_to_human", policy=ToolPolicy.AUTO)
    return employee


@pytest.fixture
def manager(team):
    return MembershipFactory(
        team=team, role=TeamRole.MANAGER, user=UserFactory(username="mia")
    ).user


@pytest.fixture
def viewer(team):
    return MembershipFactory(team=team, role=TeamRole.VIEWER, user=UserFactory(username="vic")).user


def _url(employee, action: str = "") -> str:
    return f"/employees/{employee.handle}/{action + '/' if action else ''}"


def _set_status(employee, status: str, reason: str = "") -> None:
    Employee.objects.filter(pk=employee.pk).update(status=status, status_reason=reason)


# --- the page for each status --------------------------------------------------------------------


def test_draft_says_activate_to_start_work_with_the_button(client, ava, manager):
    _set_status(ava, EmployeeStatus.DRAFT)
    client.force_login(manager)
    page = client.get(_url(ava)).text
    assert "Draft — activate to start work." in page
    assert 'name="to" value="active"' in page and ">Activate</button>" in page
    assert "A draft takes no tasks" in page  # no assign form for a draft


@pytest.mark.parametrize(
    ("status", "words_shown"),
    [
        (EmployeeStatus.SHADOW, "only proposes actions with side effects"),
        (EmployeeStatus.ACTIVE, "it takes on work"),
        (EmployeeStatus.PAUSED, "Why: <span data-status-reason>Spent too much on Friday."),
        (EmployeeStatus.OFFBOARDED, "Why: <span data-status-reason>Spent too much on Friday."),
    ],
)
def test_each_status_explains_itself(client, ava, viewer, status, words_shown):
    _set_status(ava, status, reason="Spent too much on Friday.")
    client.force_login(viewer)
    response = client.get(_url(ava))
    assert response.status_code == 200
    assert words_shown in response.text
    assert f'data-status="{status}"' in response.text


def test_paused_offers_resume_and_offboarded_offers_nothing(client, ava, manager):
    client.force_login(manager)
    _set_status(ava, EmployeeStatus.PAUSED, reason="Rule: too many rejections.")
    page = client.get(_url(ava)).text
    assert ">Resume</button>" in page and "Resume in shadow mode" in page
    assert "Rule: too many rejections." in page
    _set_status(ava, EmployeeStatus.OFFBOARDED)
    page = client.get(_url(ava)).text
    assert 'name="to"' not in page and "takes no new tasks" in page


def test_brief_and_sop_are_text_not_json(client, ava, viewer):
    client.force_login(viewer)
    page = client.get(_url(ava)).text
    assert "Every request gets a first answer within one hour." in page
    assert "<li>\n          Read the request." in page
    assert "Only when the task mentions order." in page
    assert "Uses <code>send_email</code>" in page and "<q>{first_email}</q>" in page
    assert '"text":' not in page and "{&#x27;text" not in page


# --- tools in words ------------------------------------------------------------------------------


def test_grants_are_explained_with_their_policy(client, ava, viewer):
    ToolGrant.objects.create(
        employee=ava,
        tool_name="mcp:orders/refund_order",
        pinned_definition={"description": "Refund an order in full. Only for broken goods."},
        policy=ToolPolicy.NEEDS_APPROVAL,
        suspended_at=timezone.now(),
        suspended_reason="Its server changed the tool's description.",
    )
    client.force_login(viewer)
    page = client.get(_url(ava)).text
    assert "May e-mail only @example.com addresses." in page
    assert "asks a person first" in page and "runs automatically" in page
    assert "May call the tool refund_order of the MCP server orders." in page
    assert "Refund an order in full." in page
    assert "suspended</span>" in page and "Its server changed the tool&#x27;s description." in page


@pytest.mark.parametrize(
    ("tool", "scope", "sentence"),
    [
        (
            "send_email",
            {"allowed_domains": ["example.com", "*.acme.org"]},
            "May e-mail only @example.com or @….acme.org (any subdomain of acme.org) addresses.",
        ),
        (
            "http_request",
            {"allowed_hosts": ["api.example.com"]},
            "May make GET requests to api.example.com only.",
        ),
        (
            "http_request",
            {
                "allowed_hosts": ["a.io", "*.b.io"],
                "allowed_methods": ["GET", "POST"],
                "timeout_seconds": 5,
            },
            "May make GET or POST requests to a.io or any host under b.io only; gives up after 5 s.",
        ),
        (
            "create_task",
            {"max_per_task": 3},
            "May create follow-up tasks for itself (at most 3 per task).",
        ),
        (
            "remember",
            {"allow_team": True},
            "May save memories for itself and share them with its team.",
        ),
        (
            "delegate",
            {"allowed_handles": ["rex"], "max_children": 2},
            "May hand parts of a task to employees along its collaboration lines, and also to @rex (at most 2 per task).",
        ),
        ("mcp:crm/find", {}, "May call the tool find of the MCP server crm."),
    ],
)
def test_grant_sentences(tool, scope, sentence):
    assert words.grant_sentence(tool, scope) == sentence


# --- working hours -------------------------------------------------------------------------------


def _windows(*spans):
    return [WorkingWindow(weekday=day, start=start, end=end) for day, start, end in spans]


WEEKDAYS_9_TO_5 = _windows(*[(day, time(9), time(17)) for day in range(5)])


@pytest.mark.parametrize(
    ("now", "tz", "text"),
    [
        # Monday 6 January 2025, 07:30 UTC is 08:30 in Berlin: before the day starts.
        (
            datetime(2025, 1, 6, 7, 30, tzinfo=UTC),
            "Europe/Berlin",
            "off hours — resumes today 09:00 Europe/Berlin",
        ),
        (
            datetime(2025, 1, 6, 8, 0, tzinfo=UTC),
            "Europe/Berlin",
            "on duty — until 17:00 Europe/Berlin",
        ),
        # Friday 17:00 in Berlin: the window has just ended; next is Monday.
        (
            datetime(2025, 1, 10, 16, 0, tzinfo=UTC),
            "Europe/Berlin",
            "off hours — resumes Mon 09:00 Europe/Berlin",
        ),
        # The same instant is 11:00 on Friday in New York: on duty there.
        (
            datetime(2025, 1, 10, 16, 0, tzinfo=UTC),
            "America/New_York",
            "on duty — until 17:00 America/New_York",
        ),
        # Monday 00:30 UTC is still Sunday evening in New York, already Monday morning in Tokyo.
        (
            datetime(2025, 1, 6, 0, 30, tzinfo=UTC),
            "America/New_York",
            "off hours — resumes Mon 09:00 America/New_York",
        ),
        (datetime(2025, 1, 6, 0, 30, tzinfo=UTC), "Asia/Tokyo", "on duty — until 17:00 Asia/Tokyo"),
        (
            datetime(2025, 1, 7, 9, 0, tzinfo=UTC),
            "Asia/Tokyo",
            "off hours — resumes Wed 09:00 Asia/Tokyo",
        ),
    ],
)
def test_next_window_across_time_zones(now, tz, text):
    import zoneinfo

    hours = words.hours_now(
        always_on=False, tz=zoneinfo.ZoneInfo(tz), tz_name=tz, windows=WEEKDAYS_9_TO_5, now=now
    )
    assert hours.text == text


def test_touching_windows_are_one_stretch_and_always_on_says_so():
    import zoneinfo

    utc = zoneinfo.ZoneInfo("UTC")
    split = _windows((0, time(9), time(12)), (0, time(12), time(17)))
    monday_ten = datetime(2025, 1, 6, 10, tzinfo=UTC)
    assert (
        words.hours_now(always_on=False, tz=utc, tz_name="UTC", windows=split, now=monday_ten).text
        == "on duty — until 17:00 UTC"
    )
    assert (
        words.hours_now(always_on=True, tz=utc, tz_name="UTC", windows=[], now=monday_ten).text
        == "always on — works 24/7"
    )
    assert (
        "only urgent tasks run"
        in words.hours_now(always_on=False, tz=utc, tz_name="UTC", windows=[], now=monday_ten).text
    )
    assert words.hours_lines(WEEKDAYS_9_TO_5 + _windows((5, time(10), time(14)))) == [
        "Mon\N{EN DASH}Fri 09:00\N{EN DASH}17:00",
        "Sat 10:00\N{EN DASH}14:00",
    ]


def test_the_page_shows_hours_in_the_employees_time_zone(client, ava, viewer):
    from employees.services import working_hours_set

    working_hours_set(
        employee=ava,
        actor=ACTOR,
        always_on=False,
        tz="Europe/Berlin",
        windows=[(d, time(9), time(17)) for d in range(5)],
    )
    client.force_login(viewer)
    page = client.get(_url(ava)).text
    assert "Mon\N{EN DASH}Fri 09:00\N{EN DASH}17:00" in page and "in Europe/Berlin" in page
    assert ("On duty — until 17:00 Europe/Berlin" in page) or ("Off hours — resumes" in page)


# --- duties --------------------------------------------------------------------------------------


def test_duties_next_runs_in_the_duty_time_zone(ava):
    Duty.objects.create(
        employee=ava,
        name="Morning sweep",
        cron="0 9 * * 1-5",
        timezone="Europe/Berlin",
        instructions="Sweep.",
    )
    Duty.objects.create(
        employee=ava,
        name="Evening report",
        cron="0 18 * * *",
        timezone="America/New_York",
        instructions="Report.",
    )
    Duty.objects.create(
        employee=ava, name="Old", cron="0 1 * * *", timezone="UTC", instructions="x", enabled=False
    )
    # Friday 10 January 2025, 12:00 UTC.
    rows = {row.duty.name: row for row in duty_rows(ava, datetime(2025, 1, 10, 12, tzinfo=UTC))}
    assert rows["Morning sweep"].next_runs == [
        "Mon 13 Jan 09:00 Europe/Berlin",
        "Tue 14 Jan 09:00 Europe/Berlin",
        "Wed 15 Jan 09:00 Europe/Berlin",
    ]
    assert rows["Evening report"].next_runs[0] == "Fri 10 Jan 18:00 America/New_York"
    assert rows["Old"].next_runs == [] and "Disabled" in rows["Old"].note


def test_duties_across_a_daylight_saving_change(ava):
    Duty.objects.create(
        employee=ava, name="Sweep", cron="0 9 * * *", timezone="Europe/Berlin", instructions="x"
    )
    # Saturday 29 March 2025: clocks go forward overnight; 09:00 stays 09:00 local.
    [row] = duty_rows(ava, datetime(2025, 3, 29, 12, tzinfo=UTC))
    assert row.next_runs[:2] == ["Sun 30 Mar 09:00 Europe/Berlin", "Mon 31 Mar 09:00 Europe/Berlin"]


def test_a_paused_employees_duties_say_they_do_not_run(client, ava, viewer):
    Duty.objects.create(
        employee=ava, name="Sweep", cron="0 9 * * *", timezone="UTC", instructions="x"
    )
    _set_status(ava, EmployeeStatus.PAUSED)
    client.force_login(viewer)
    page = client.get(_url(ava)).text
    assert "Creates no tasks while paused." in page and "data-next-run" in page


# --- budget --------------------------------------------------------------------------------------


def test_budget_bar_shows_todays_spend(client, ava, viewer):
    ava.max_cost_per_day = Decimal("5.00")
    ava.save(update_fields=["max_cost_per_day"])
    today = timezone.localdate(timezone=ava.tzinfo)
    DailySpend.objects.create(
        employee=ava, day=today, spent=Decimal("1.00"), reserved=Decimal("0.25")
    )
    DailySpend.objects.create(
        employee=ava, day=today.replace(year=today.year - 1), spent=Decimal("5")
    )
    client.force_login(viewer)
    page = client.get(_url(ava)).text
    assert 'aria-valuenow="25"' in page and 'style="width: 25%"' in page
    assert "<strong>$1.00</strong> of $5.00" in page and "$0.25 of it set aside" in page
    assert "budget-ok" in page


def test_budget_levels_and_a_raise_for_today(ava):
    now = timezone.now()
    assert budget_today(ava, now).percent == 0  # no row yet: nothing spent
    day = timezone.localdate(now, timezone=ava.tzinfo)
    row = DailySpend.objects.create(employee=ava, day=day, spent=Decimal("4.00"))
    assert (budget_today(ava, now).percent, budget_today(ava, now).level) == (80, "warn")
    row.limit_override = Decimal("2.00")
    row.save()
    budget = budget_today(ava, now)
    assert (budget.percent, budget.level, budget.raised, budget.limit) == (
        100,
        "full",
        True,
        Decimal("2.00"),
    )


# --- work now and recent -------------------------------------------------------------------------


def test_doing_now_and_recent_tasks_link_the_task_pages(client, ava, viewer):
    open_task, _ = task_create(employee=ava, title="Refund question", input="Help", dispatch=False)
    done, _ = task_create(employee=ava, title="Old question", input="Help", dispatch=False)
    Task.objects.filter(pk=done.pk).update(status=TaskStatus.DONE, cost=Decimal("0.0042"))
    client.force_login(viewer)
    page = client.get(_url(ava)).text
    now_section = page.split('id="profile-now"', 1)[1].split("</section>", 1)[0]
    assert f'href="/tasks/{open_task.pk}/"' in now_section and "Not started yet" in now_section
    assert 'hx-trigger="every 10s' in now_section  # polls while there is open work
    recent = page.split('id="recent-heading"', 1)[1].split("</section>", 1)[0]
    assert f'href="/tasks/{done.pk}/"' in recent and "$0.0042" in recent
    fragment = client.get(_url(ava, "now"), headers=HX).text
    assert fragment.lstrip().startswith('<section id="profile-now"')


def test_kpis_and_memory_are_linked(client, ava, viewer):
    client.force_login(viewer)
    page = client.get(_url(ava)).text
    assert 'hx-get="/kpis/?employee=ava&period=7d" hx-trigger="load"' in page
    assert 'href="/employees/ava/memory/"' in page


# --- permissions ---------------------------------------------------------------------------------


def test_viewer_sees_the_page_without_manager_actions(client, ava, viewer):
    client.force_login(viewer)
    page = client.get(_url(ava)).text
    assert "Ava" in page and "Assign a task" not in page and 'name="to"' not in page


def test_manager_sees_the_actions(client, ava, manager):
    client.force_login(manager)
    page = client.get(_url(ava)).text
    assert "Assign a task" in page and ">Pause</button>" in page and "Offboard Ava…" in page


def test_employees_own_accountable_person_may_manage(client, ava, team):
    person = MembershipFactory(team=team, role=TeamRole.VIEWER).user
    Employee.objects.filter(pk=ava.pk).update(manager=person)
    client.force_login(person)
    assert "Assign a task" in client.get(_url(ava)).text


def test_outsider_gets_404_for_the_page_and_every_action(client, ava):
    client.force_login(UserFactory(username="out"))
    assert client.get(_url(ava)).status_code == 404
    assert client.get(_url(ava, "now")).status_code == 404
    assert client.get(_url(ava, "brief-diff") + "?a=1&b=2").status_code == 404
    assert client.post(_url(ava, "assign"), {"instructions": "x"}).status_code == 404
    assert client.post(_url(ava, "status"), {"to": "paused"}).status_code == 404
    assert client.get("/employees/nobody-here/").status_code == 404


def test_viewer_posts_are_refused(client, ava, viewer):
    client.force_login(viewer)
    assert client.post(_url(ava, "assign"), {"instructions": "Do it"}).status_code == 403
    assert client.post(_url(ava, "status"), {"to": "paused"}, headers=HX).status_code == 403
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.ACTIVE and not ava.tasks.exists()


def test_posts_need_the_csrf_token(ava, manager):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)
    assert client.post(_url(ava, "status"), {"to": "paused"}).status_code == 403
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.ACTIVE


def test_gets_do_not_change_state(client, ava, manager):
    client.force_login(manager)
    assert client.get(_url(ava, "status") + "?to=paused").status_code == 405
    assert client.get(_url(ava, "assign")).status_code == 405


# --- manager actions end to end ------------------------------------------------------------------


def test_manager_assigns_a_task_through_htmx(client, ava, manager):
    client.force_login(manager)
    response = client.post(
        _url(ava, "assign"),
        {"title": "", "instructions": "Answer Bob.\nHe waits.", "urgent": "on"},
        headers=HX,
    )
    assert response.status_code == 200
    task = ava.tasks.get()
    assert task.title == "Answer Bob." and task.source == TaskSource.MANUAL
    assert task.requested_by_user == manager and task.urgent
    assert f'Assigned <a href="/tasks/{task.pk}/">task #{task.pk}</a>' in response.text
    assert (
        'id="profile-now" class="card" aria-labelledby="now-heading" hx-swap-oob="true"'
        in response.text
    )


def test_assign_without_javascript_redirects_with_a_message(client, ava, manager):
    client.force_login(manager)
    response = client.post(_url(ava, "assign"), {"instructions": "Sort the inbox"}, follow=True)
    task = ava.tasks.get()
    assert f"Assigned task #{task.pk} to Ava" in response.text


def test_empty_or_refused_tasks_are_clear_messages(client, ava, manager):
    client.force_login(manager)
    response = client.post(
        _url(ava, "assign"), {"title": "Kept", "instructions": "   "}, headers=HX
    )
    assert response.status_code == 200 and "A task needs instructions." in response.text
    assert 'value="Kept"' in response.text  # what was typed stays
    _set_status(ava, EmployeeStatus.DRAFT)
    response = client.post(_url(ava, "assign"), {"instructions": "Go"}, headers=HX)
    assert "still a draft" in response.text
    response = client.post(_url(ava, "assign"), {"instructions": "x" * 20_001}, headers=HX)
    assert "Keep the instructions under 20,000 characters" in response.text
    assert not ava.tasks.exists()


def test_pause_with_a_reason_then_resume(client, ava, manager):
    client.force_login(manager)
    response = client.post(
        _url(ava, "status"), {"to": "paused", "reason": "Checking its refunds."}, headers=HX
    )
    assert response.status_code == 200 and response["HX-Refresh"] == "true"
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.PAUSED and ava.status_reason == "Checking its refunds."
    page = client.get(_url(ava)).text
    assert (
        "Ava is now paused." in page
        and "Why: <span data-status-reason>Checking its refunds.</span>" in page
    )
    client.post(_url(ava, "status"), {"to": "active"}, headers=HX)
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.ACTIVE


def test_pause_without_a_reason_names_who_paused(client, ava, manager):
    manager.first_name, manager.last_name = "Mia", "Ng"
    manager.save()
    client.force_login(manager)
    client.post(_url(ava, "status"), {"to": "paused"})
    ava.refresh_from_db()
    assert ava.status_reason == "Paused by Mia Ng."


def test_activate_a_draft_and_shadow(client, ava, manager):
    _set_status(ava, EmployeeStatus.DRAFT)
    client.force_login(manager)
    client.post(_url(ava, "status"), {"to": "shadow"})
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.SHADOW
    # From shadow mode, activating first shows the shadow report and asks to confirm.
    response = client.post(_url(ava, "status"), {"to": "active"})
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.SHADOW and "Promote Ava to active?" in response.text
    response = client.post(_url(ava, "status"), {"to": "active", "confirm": "yes"}, follow=True)
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.ACTIVE and ava.hired_at is not None
    assert "Ava is now active." in response.text


def test_offboarding_needs_a_reason_and_a_confirmation(client, ava, manager):
    client.force_login(manager)
    response = client.post(_url(ava, "status"), {"to": "offboarded", "confirm": "yes"}, headers=HX)
    assert "Say why Ava is offboarded" in response.text
    assert response.text.lstrip().startswith('<section id="profile-status"')
    response = client.post(
        _url(ava, "status"), {"to": "offboarded", "reason": "Role ended."}, headers=HX
    )
    assert "Tick the box to confirm" in response.text and "Role ended." in response.text
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.ACTIVE
    client.post(
        _url(ava, "status"),
        {"to": "offboarded", "reason": "Role ended.", "confirm": "yes"},
        headers=HX,
    )
    ava.refresh_from_db()
    assert ava.status == EmployeeStatus.OFFBOARDED and ava.status_reason == "Role ended."
    assert not ava.tool_grants.exists()  # the service revoked them


def test_transition_errors_are_messages_not_500s(client, ava, manager):
    _set_status(ava, EmployeeStatus.OFFBOARDED)
    client.force_login(manager)
    response = client.post(_url(ava, "status"), {"to": "active"}, headers=HX)
    assert response.status_code == 200 and "is offboarded and cannot become active" in response.text
    response = client.post(_url(ava, "status"), {"to": "active"}, follow=True)
    assert "is offboarded and cannot become active" in response.text
    response = client.post(_url(ava, "status"), {"to": "draft"}, headers=HX)
    assert "Choose what to do" in response.text


# --- brief versions and their diff ---------------------------------------------------------------


@pytest.fixture
def versions(ava):
    employee_update(employee=ava, actor=ACTOR, changes={"goals": "Answer within 30 minutes."})
    employee_update(
        employee=ava, actor=ACTOR, changes={"sop": [*ava.sop, {"text": "Close the request."}]}
    )
    return ava


def test_diff_between_two_versions(client, versions, viewer):
    client.force_login(viewer)
    response = client.get(_url(versions, "brief-diff") + "?a=1&b=2", headers=HX)
    html = response.text
    assert html.lstrip().startswith('<div id="brief-diff"')
    assert "Changes from v1 to v2" in html
    assert (
        '<span class="visually-hidden">removed: </span>  Every request gets a first answer within one hour.</del>'
        in html
    )
    assert '<span class="visually-hidden">added: </span>  Answer within 30 minutes.</ins>' in html
    # The order asked does not matter: the older is always "from".
    assert "Changes from v2 to v3" in client.get(_url(versions, "brief-diff") + "?a=3&b=2").text
    assert "3. Close the request." in client.get(_url(versions, "brief-diff") + "?a=2&b=3").text


def test_the_page_shows_the_latest_change_and_accepts_versions_without_javascript(
    client, versions, viewer
):
    client.force_login(viewer)
    page = client.get(_url(versions)).text
    assert "Changes from v2 to v3" in page and "v1</option>" in page
    page = client.get(_url(versions) + "?a=1&b=3").text
    assert "Changes from v1 to v3" in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?a=1&b=9", "Ava&#x27;s brief has no version 9: versions go from 1 to 3."),
        ("?a=x&b=2", "Choose the first version by its number"),
        ("?a=2", "Choose the second version by its number"),
        ("?a=2&b=2", "Choose two different versions to compare."),
    ],
)
def test_bad_version_numbers_are_explained(client, versions, viewer, query, message):
    client.force_login(viewer)
    response = client.get(_url(versions, "brief-diff") + query, headers=HX)
    assert response.status_code == 200 and message in response.text
    assert message in client.get(_url(versions) + query).text


def test_brief_diff_of_an_employee_without_versions(team):
    lonely = EmployeeFactory(team=team, name="Lonely")
    with pytest.raises(BriefDiffError, match="it has no versions yet"):
        brief_diff(lonely, "1", "2")


# --- cost of the page ----------------------------------------------------------------------------


def _page_queries(client, employee) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(_url(employee)).status_code == 200
    return len(queries)


def test_the_page_reads_a_bounded_number_of_queries(client, ava, manager):
    client.force_login(manager)
    task_create(employee=ava, title="", input="One", dispatch=False)
    few = _page_queries(client, ava)
    for number in range(25):
        task, _ = task_create(employee=ava, title="", input=f"Task {number}", dispatch=False)
        if number % 2:
            Task.objects.filter(pk=task.pk).update(status=TaskStatus.DONE)
        if number < 3:
            ToolGrantFactory(employee=ava, tool_name=["recall", "remember", "create_task"][number])
        Duty.objects.create(
            employee=ava, name=f"Duty {number}", cron="0 9 * * *", timezone="UTC", instructions="x"
        )
        employee_update(employee=ava, actor=ACTOR, changes={"tone": f"Tone {number}"})
    many = _page_queries(client, ava)
    assert many == few, f"queries grow with the history: {few} → {many}"
    assert many <= 16


def test_profile_context_at_a_fixed_time(ava, manager, viewer):
    from employees.services import working_hours_set

    saturday = datetime(2025, 1, 11, 12, tzinfo=UTC)
    context = profile_context(ava, user=manager, now=saturday)
    assert context["can_manage"] and context["hours"].text == "always on — works 24/7"
    assert [step.number for step in context["sop"]] == [1, 2]
    working_hours_set(
        employee=ava,
        actor=ACTOR,
        always_on=False,
        tz="Europe/Berlin",
        windows=[(day, time(9), time(17)) for day in range(5)],
    )
    context = profile_context(ava, user=viewer, now=saturday)
    assert not context["can_manage"]
    assert context["hours"].text == "off hours — resumes Mon 09:00 Europe/Berlin"
    assert context["hours"].local_now == "Sat 13:00"


# --- the links in ---------------------------------------------------------------------------------


def test_directory_cards_and_org_chart_link_the_profile(client, ava, viewer):
    client.force_login(viewer)
    assert 'href="/employees/ava/"' in client.get("/employees/").text
    assert 'href="/employees/ava/"' in client.get("/employees/org/").text
