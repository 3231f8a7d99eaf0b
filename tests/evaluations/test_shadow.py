"""The shadow report: a shadow employee's proposals next to what people did, per week."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from approvals.models import ApprovalRequest, Escalation
from approvals.services import approval_decide, escalation_answer, escalation_create
from employees.models import EmployeeStatus, ToolPolicy
from employees.services import employee_transition
from evaluations.shadow import report_start, shadow_report
from evaluations.shadow_services import shadow_proposal_review
from tasks.loop import run_task
from tasks.loop.waits import STOP_OPTIONS
from tasks.models import Step, TaskStatus
from tests.factories import (
    EmployeeFactory,
    MembershipFactory,
    TeamFactory,
    ToolGrantFactory,
    UserFactory,
    assigned_task,
)
from tests.fakes.openai_server import reply

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def team(db):
    return TeamFactory(name="Support")


@pytest.fixture
def sia(team):
    """A shadow employee: follow-ups need approval, e-mails are only proposed, it escalates."""
    employee = EmployeeFactory(
        name="Sia", handle="sia", team=team, status=EmployeeStatus.SHADOW, timezone="Europe/Berlin"
    )
    ToolGrantFactory(
        employee=employee, tool_name="create_task", policy=ToolPolicy.NEEDS_APPROVAL, scope={}
    )
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        policy=ToolPolicy.AUTO,
        scope={"allowed_domains": ["example.com"]},
    )
    ToolGrantFactory(employee=employee, tool_name="escalate_to_human", scope={})
    return employee


@pytest.fixture
def dana(team):
    user = UserFactory(username="dana", first_name="Dana", last_name="Reyes")
    MembershipFactory(team=team, user=user, role="approver")
    return user


def _approval(model_server, employee, title="Call Ann back") -> ApprovalRequest:
    model_server.enqueue(
        reply(
            "I will set a follow-up.",
            tool_calls=[("create_task", {"title": title, "instructions": "Call Ann."})],
        )
    )
    task = assigned_task(employee, f"Please handle: {title}")
    assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL
    return ApprovalRequest.objects.get(task=task)


def _escalation(model_server, employee, recommendation="Replace it") -> Escalation:
    arguments = {
        "summary": "The vase arrived broken.",
        "options": ["Refund", "Replace it", "Refuse"],
        "recommendation": recommendation,
    }
    model_server.enqueue(reply(None, tool_calls=[("escalate_to_human", arguments)]))
    task = assigned_task(employee, "My vase arrived broken.")
    assert run_task(task.pk) == TaskStatus.WAITING_ESCALATION
    return Escalation.objects.get(task=task)


def _proposal(model_server, employee, subject="Your refund") -> Step:
    email = {"to": ["ann@example.com"], "subject": subject, "body": "It is on its way."}
    model_server.enqueue(reply("Emailing Ann.", tool_calls=[("send_email", email)]), reply("Done."))
    task = assigned_task(employee, "Tell Ann about her refund.")
    assert run_task(task.pk) == TaskStatus.DONE
    return task.steps.get(kind="tool_call", payload__status="proposed")


def _move(obj, days: int) -> None:
    """Put a case `days` ago (created through the services now, it happened earlier)."""
    type(obj).objects.filter(pk=obj.pk).update(created_at=timezone.now() - timedelta(days=days))


def _monday(days_ago: int):
    local = (timezone.now() - timedelta(days=days_ago)).astimezone(BERLIN).date()
    return local - timedelta(days=local.weekday())


def test_each_kind_of_human_handling_is_compared_per_week(model_server, sia, dana):
    as_proposed = _approval(model_server, sia)
    approval_decide(approval=as_proposed, user=dana, decision="approved")
    rejected = _approval(model_server, sia, "Offer a voucher")
    approval_decide(approval=rejected, user=dana, decision="rejected", comment="No vouchers.")
    for approval in (as_proposed, rejected):
        _move(approval, 14)

    edited = _approval(model_server, sia, "Call Bob")
    approval_decide(
        approval=edited,
        user=dana,
        decision="approved",
        edited_arguments={"title": "Call Bob tomorrow", "instructions": "Call Ann."},
    )
    followed = _escalation(model_server, sia)
    escalation_answer(escalation=followed, user=dana, chosen_option="Replace it")
    overruled = _escalation(model_server, sia)
    escalation_answer(
        escalation=overruled, user=dana, chosen_option="Refund", answer="They are a regular."
    )
    same = _proposal(model_server, sia)
    shadow_proposal_review(step=same, user=dana, agrees=True)
    other = _proposal(model_server, sia, subject="Refund soon")
    shadow_proposal_review(step=other, user=dana, agrees=False, action="Phoned Ann instead.")
    open_one = _proposal(model_server, sia, subject="Not compared")

    report = shadow_report(sia)

    assert len(report.weeks) == 8 and report.weeks[0].start == report_start(sia).date()
    weeks = {week.start: week for week in report.weeks if week.compared}
    earlier, this_week = weeks[_monday(14)], weeks[_monday(0)]
    assert (earlier.compared, earlier.agreed, earlier.rate) == (2, 1, 50)
    assert (this_week.compared, this_week.agreed, this_week.rate) == (5, 2, 40)
    assert (report.compared, report.agreed, report.diverged) == (7, 3, 4)
    assert {source: (b.compared, b.agreed) for source, b in report.by_source.items()} == {
        "approval": (3, 1),
        "escalation": (2, 1),
        "proposal": (2, 1),
    }
    cases = {(case.source, case.ref): case for case in report.divergent}
    assert set(cases) == {
        ("approval", rejected.pk),
        ("approval", edited.pk),
        ("escalation", overruled.pk),
        ("proposal", other.pk),
    }
    assert cases["approval", rejected.pk].person_title == "Rejected it"
    assert cases["approval", rejected.pk].person_text == "No vouchers."
    assert cases["approval", rejected.pk].person_name == "Dana Reyes"
    assert cases["approval", edited.pk].person_title == (
        "Approved it only after changing title: 'Call Bob' → 'Call Bob tomorrow'"
    )
    assert ("title", "Call Bob tomorrow") in cases["approval", edited.pk].person_pairs
    escalated = cases["escalation", overruled.pk]
    assert escalated.proposed_title == "Recommended “Replace it”"
    assert escalated.person_title == "Chose “Refund”"
    assert escalated.person_text == "They are a regular."
    recorded = cases["proposal", other.pk]
    assert recorded.proposed_title == "Proposed send_email"
    assert ("subject", "Refund soon") in recorded.proposed_pairs
    assert recorded.person_text == "Phoned Ann instead."
    assert [p.step_id for p in report.pending] == [open_one.pk] and report.pending_total == 1


def test_only_work_done_in_shadow_mode_and_in_the_last_eight_weeks_counts(model_server, sia, dana):
    old = _approval(model_server, sia, "Long ago")
    approval_decide(approval=old, user=dana, decision="rejected", comment="Too old to count.")
    _move(old, 7 * 9)
    in_shadow = _approval(model_server, sia, "While shadowed")
    approval_decide(approval=in_shadow, user=dana, decision="approved")
    # The loop breaker's escalation recommends for the system, not for the employee.
    breaker = escalation_create(
        task=in_shadow.task,
        summary="Sia stopped: the same call three times.",
        evidence=[],
        options=STOP_OPTIONS,
        recommendation="Stop the task",
    )
    escalation_answer(escalation=breaker, user=dana, chosen_option="Let it continue")

    employee_transition(employee=sia, to=EmployeeStatus.ACTIVE, actor=Actor.system("t"))
    while_active = _approval(model_server, sia, "While active")
    approval_decide(approval=while_active, user=dana, decision="rejected", comment="No.")

    report = shadow_report(sia)
    assert (report.compared, report.agreed) == (1, 1)
    assert report.divergent == []


def test_weeks_start_on_monday_in_the_employees_time_zone(model_server, sia, dana):
    sia.timezone = "Pacific/Auckland"
    sia.save(update_fields=["timezone"])
    approval = _approval(model_server, sia)
    approval_decide(approval=approval, user=dana, decision="approved")
    # Monday 3 March 2025, 08:00 in Auckland is still Sunday evening in UTC.
    monday_morning = datetime(2025, 3, 3, 8, 0, tzinfo=ZoneInfo("Pacific/Auckland"))
    ApprovalRequest.objects.filter(pk=approval.pk).update(created_at=monday_morning)

    report = shadow_report(sia, now=datetime(2025, 3, 5, 12, 0, tzinfo=ZoneInfo("UTC")))

    assert report.weeks[-1].start.isoformat() == "2025-03-03"
    assert report.weeks[-1].compared == 1 and report.weeks[-2].compared == 0
    assert report.since == datetime(2025, 1, 13, tzinfo=ZoneInfo("Pacific/Auckland"))


def test_recording_what_a_person_did_is_an_audit_entry_and_the_newest_counts(
    model_server, sia, dana
):
    step = _proposal(model_server, sia)
    shadow_proposal_review(step=step, user=dana, agrees=False, action="Sent a shorter mail.")
    shadow_proposal_review(step=step, user=dana, agrees=True)
    entries = AuditEntry.objects.filter(action="shadow.reviewed").order_by("id")
    assert [e.data["agrees"] for e in entries] == [False, True]
    assert entries[0].subject_id == str(step.task_id) and entries[0].actor_label == "dana"
    report = shadow_report(sia)
    assert (report.compared, report.agreed, report.pending_total) == (1, 1, 0)


# --- the page ------------------------------------------------------------------------------------

HX = {"HX-Request": "true"}


def _url(employee) -> str:
    return reverse("evaluations:shadow_report", args=[employee.handle])


def test_the_report_page_shows_the_cases_side_by_side(client, model_server, sia, dana):
    rejected = _approval(model_server, sia, "Offer a voucher")
    approval_decide(approval=rejected, user=dana, decision="rejected", comment="No vouchers.")
    client.force_login(dana)
    response = client.get(_url(sia))
    assert response.status_code == 200
    html = response.text
    assert "Shadow report: Sia" in html and "data-rate>0%" in html
    assert f'data-source="approval" data-ref="{rejected.pk}"' in html
    assert "Asked to run create_task" in html and "Rejected it" in html and "No vouchers." in html
    assert "Europe/Berlin" in html


def test_people_who_may_not_see_the_employee_get_a_404(client, sia, db):
    outsider = UserFactory(username="omar")
    MembershipFactory(team=TeamFactory(name="Ops"), user=outsider, role="manager")
    client.force_login(outsider)
    assert client.get(_url(sia)).status_code == 404
    assert client.get(reverse("evaluations:shadow_report", args=["nobody"])).status_code == 404


def test_a_person_records_what_they_did_instead_from_the_report(client, model_server, sia, dana):
    step = _proposal(model_server, sia)
    client.force_login(dana)
    url = reverse("evaluations:shadow_review", args=[sia.handle, step.pk])
    response = client.post(url, {"verdict": "different", "action": "  "}, headers=HX)
    assert response.status_code == 200
    assert "Say what you did instead" in response.text
    assert response.text.lstrip().startswith('<div id="shadow-body"')
    assert not AuditEntry.objects.filter(action="shadow.reviewed").exists()

    response = client.post(
        url, {"verdict": "different", "action": "Phoned Ann instead."}, headers=HX
    )
    assert "Phoned Ann instead." in response.text and "data-diverged>1<" in response.text
    assert "No proposal waits to be compared." in response.text


def test_review_refuses_bad_input_and_other_employees_steps(client, model_server, sia, dana, team):
    step = _proposal(model_server, sia)
    client.force_login(dana)
    url = reverse("evaluations:shadow_review", args=[sia.handle, step.pk])
    response = client.post(url, {"verdict": "maybe"}, headers=HX)
    assert response.status_code == 200 and "Choose: you did the same" in response.text
    colleague = EmployeeFactory(handle="colleague", team=team, status=EmployeeStatus.SHADOW)
    other_url = reverse("evaluations:shadow_review", args=[colleague.handle, step.pk])
    assert client.post(other_url, {"verdict": "same"}, headers=HX).status_code == 404
    assert client.get(url).status_code == 405
    response = client.post(url, {"verdict": "same"})
    assert response.status_code == 302 and response["Location"] == _url(sia)
