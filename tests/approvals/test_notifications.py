"""Emails to the people who decide: one per request (once), or an hourly digest, or none."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django_q.models import OrmQ, Schedule

from approvals.jobs import notify_new_approval, send_digests
from approvals.models import ApprovalRequest, NotificationPreference
from approvals.services import (
    approval_decide,
    approval_request_create,
    budget_raise_request_create,
)
from tasks.budget import BudgetRefusal
from tasks.models import Task
from tasks.services import task_create
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

EMAIL = {"to": ["ann@example.com"], "subject": "Your order", "body": "It shipped today."}


@pytest.fixture
def people(db):
    support, ops = TeamFactory(name="Support"), TeamFactory(name="Ops")
    # Nobody logs in here: no password, so no slow hashing.
    hank = UserFactory(username="hank", password=None)  # Ava's manager, not in her team
    ava = EmployeeFactory(name="Ava", handle="ava", team=support, manager=hank)
    rex = EmployeeFactory(name="Rex", handle="rex", team=ops)
    users = {"hank": hank, "ava": ava, "rex": rex}
    for name, team, role in [
        ("dana", support, "approver"),
        ("mia", support, "manager"),
        ("vic", support, "viewer"),
        ("otto", support, "approver"),
        ("dora", support, "approver"),
        ("omar", ops, "approver"),
    ]:
        users[name] = UserFactory(username=name, password=None)
        MembershipFactory(team=team, user=users[name], role=role)
    nomail = UserFactory(username="nomail", email="", password=None)
    MembershipFactory(team=support, user=nomail, role="approver")
    NotificationPreference.objects.create(user=users["otto"], mode="off")
    NotificationPreference.objects.create(user=users["dora"], mode="digest")
    return users


def _task(employee) -> Task:
    task, _ = task_create(employee=employee, title="Confirm order", input="x", dispatch=False)
    return task


def _request(employee, *, tool="send_email", arguments=EMAIL) -> ApprovalRequest:
    return approval_request_create(
        task=_task(employee),
        tool_name=tool,
        arguments=arguments,
        risk="high",
        reason="The customer asked for a confirmation.",
        call_id="call_1",
    )


def _recipients(mailoutbox) -> list[str]:
    return sorted(address for message in mailoutbox for address in message.to)


def test_a_new_request_emails_exactly_the_teams_approvers_managers_and_the_manager(
    people, mailoutbox
):
    approval = _request(people["ava"])
    notify_new_approval(approval.pk)
    # Not the viewer, not Ops, not off-mode, not digest-mode, not someone without an address.
    assert _recipients(mailoutbox) == [
        "dana@example.com",
        "hank@example.com",
        "mia@example.com",
    ]
    message = mailoutbox[0]
    assert message.subject == "[AI Workforce] Ava wants to send_email — approve or reject"
    for text in [
        "To: ann@example.com",
        "Subject: Your order",
        "It shipped today.",
        "Why: The customer asked for a confirmation.",
        f"Decide by: {approval.deadline:%Y-%m-%d}",
        "/inbox/",
    ]:
        assert text in message.body


def test_a_second_run_sends_nothing_more(people, mailoutbox):
    approval = _request(people["ava"])
    assert notify_new_approval(approval.pk) == "sent to 3"
    assert notify_new_approval(approval.pk) == "already notified, or no longer pending"
    assert len(mailoutbox) == 3
    approval.refresh_from_db()
    assert approval.notified_at is not None


def test_a_request_decided_before_the_job_runs_is_not_emailed(people, mailoutbox):
    approval = _request(people["ava"])
    approval_decide(approval=approval, user=people["dana"], decision="approved")
    notify_new_approval(approval.pk)
    assert mailoutbox == []


def test_off_mode_and_other_teams_get_nothing(people, mailoutbox):
    notify_new_approval(_request(people["rex"]).pk)
    assert _recipients(mailoutbox) == ["omar@example.com"]
    NotificationPreference.objects.create(user=people["omar"], mode="off")
    notify_new_approval(_request(people["rex"]).pk)
    assert len(mailoutbox) == 1


def test_an_http_request_shows_method_and_url_but_no_secrets(people, mailoutbox):
    arguments = {
        "method": "POST",
        "url": "https://user:hunter2@api.example.com/v1/refunds?api_key=sk-live-123&order=42",
        "headers": {"Authorization": "Bearer tok-999"},
        "body": '{"amount": 10}',
    }
    notify_new_approval(_request(people["ava"], tool="http_request", arguments=arguments).pk)
    body = mailoutbox[0].body
    assert "HTTP POST https://api.example.com/v1/refunds?api_key=[redacted]&order=42" in body
    assert "Headers: Authorization" in body and "Body: 14 characters (see the inbox)" in body
    for secret in ["hunter2", "sk-live-123", "tok-999"]:
        assert secret not in body


def test_a_budget_raise_shows_current_and_requested(people, mailoutbox):
    refusal = BudgetRefusal(scope="task", current="0.50", needed="0.70", message="Over budget.")
    approval = budget_raise_request_create(task=_task(people["ava"]), refusal=refusal)
    notify_new_approval(approval.pk)
    message = mailoutbox[0]
    assert message.subject == "[AI Workforce] Ava asks for a budget raise — approve or reject"
    assert "Current limit: 0.50" in message.body and "Requested limit: 1.00" in message.body


def test_new_requests_are_queued_for_notification_on_commit(
    people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        approval = _request(people["ava"])
    jobs = [(job.task["func"], job.task["args"]) for job in OrmQ.objects.all()]
    assert jobs == [("approvals.jobs.notify_new_approval", (approval.pk,))]


def test_a_digest_groups_new_requests_and_sends_nothing_when_nothing_is_new(people, mailoutbox):
    first, second = _request(people["ava"]), _request(people["ava"])
    _request(people["rex"])  # another team's
    assert send_digests() == 1
    [digest] = mailoutbox
    assert digest.to == ["dora@example.com"]
    assert digest.subject == "[AI Workforce] 2 approval requests wait for you"
    assert f"Request #{first.pk}: Ava wants to send_email" in digest.body
    assert f"Request #{second.pk}: Ava wants to send_email" in digest.body
    assert "Rex" not in digest.body and "/inbox/" in digest.body

    assert send_digests() == 0
    assert len(mailoutbox) == 1

    third = _request(people["ava"])
    assert send_digests() == 1
    later = mailoutbox[1].body
    assert f"Request #{third.pk}:" in later and f"Request #{first.pk}:" not in later


def test_the_digest_is_scheduled_hourly_once_by_name():
    assert Schedule.objects.filter(name="approval-digest").count() == 1
    schedule = Schedule.objects.get(name="approval-digest")
    assert (schedule.func, schedule.schedule_type) == ("approvals.jobs.send_digests", "H")
    migration = import_module("approvals.migrations.0003_register_digest_schedule")
    migration.register(django_apps, None)
    assert Schedule.objects.filter(name="approval-digest").count() == 1


def test_links_in_the_emails_are_absolute_from_site_url(people, mailoutbox, settings):
    settings.SITE_URL = "https://workforce.example.com"
    approval = _request(people["ava"])
    notify_new_approval(approval.pk)
    link = f"https://workforce.example.com/inbox/#approval-{approval.pk}"
    assert f"Approve or reject it in your inbox: {link}\n" in mailoutbox[0].body
    assert send_digests() == 1
    assert "in your inbox: https://workforce.example.com/inbox/\n" in mailoutbox[-1].body


def test_a_request_without_a_reason_has_no_why_line(people, mailoutbox):
    approval = approval_request_create(
        task=_task(people["ava"]),
        tool_name="send_email",
        arguments=EMAIL,
        risk="high",
        reason="  ",
        call_id="call_1",
    )
    notify_new_approval(approval.pk)
    send_digests()
    assert mailoutbox and all("Why:" not in message.body for message in mailoutbox)
    assert "Risk: High" in mailoutbox[0].body
