"""The inbox: scoped to the teams a person approves for; decisions swap the row and resume work."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.urls import reverse

from aiworkforce.models import AuditEntry
from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.services import DecisionConflict, approval_decide
from tasks.models import Task, TaskStatus
from tests.approvals.conftest import make_approval
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


def test_inbox_shows_only_the_teams_the_person_approves_for(client, teams, approver):
    mine = make_approval(teams["ava"])
    theirs = make_approval(
        teams["rex"],
        tool="http_request",
        arguments={"method": "POST", "url": "https://x.example/y", "body": "{}"},
    )
    client.force_login(approver)
    page = client.get("/inbox/").text
    assert f'id="approval-{mine.pk}"' in page and f'id="approval-{theirs.pk}"' not in page
    # The proposed email is rendered for a person: recipients, subject, body, reason, risk.
    assert "ann@example.com" in page and "Your order" in page and "It shipped today." in page
    assert "I should tell them." in page and "High risk" in page


def test_viewers_are_not_approvers(client, teams):
    viewer = UserFactory()
    MembershipFactory(team=teams["support"], user=viewer, role="viewer")
    make_approval(teams["ava"])
    client.force_login(viewer)
    assert "You do not approve for any team" in client.get("/inbox/").text


@pytest.mark.parametrize(
    ("method", "url", "data"),
    [
        ("post", "/inbox/{pk}/approve/", {}),
        ("post", "/inbox/{pk}/reject/", {"reason": "no"}),
        ("get", "/inbox/{pk}/edit/", None),
        ("post", "/inbox/{pk}/edit/approve/", {"to": "a@example.com", "subject": "s", "body": "b"}),
    ],
)
def test_another_teams_request_is_404_on_every_endpoint_and_stays_pending(
    client, teams, approver, method, url, data
):
    theirs = make_approval(teams["rex"])
    client.force_login(approver)
    response = getattr(client, method)(url.format(pk=theirs.pk), data, headers=HX)
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == ApprovalStatus.PENDING


def test_bulk_cannot_reach_another_teams_requests(client, teams, approver):
    theirs = make_approval(teams["rex"])
    client.force_login(approver)
    client.post("/inbox/bulk/", {"action": "approve", "selected": [theirs.pk]}, headers=HX)
    theirs.refresh_from_db()
    assert theirs.status == ApprovalStatus.PENDING


def test_approving_swaps_the_row_resumes_the_task_and_audits_who_where(client, teams, approver):
    approval = make_approval(teams["ava"])
    client.force_login(approver)
    response = client.post(f"/inbox/{approval.pk}/approve/", headers=HX, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 200
    assert (
        response.text.lstrip().startswith('<article class="approval-row')
        and "Approved by dana" in response.text
    )
    approval.task.refresh_from_db()
    assert approval.task.status == TaskStatus.QUEUED
    entry = AuditEntry.objects.get(action="approval.approved")
    assert entry.actor_user_id == approver.pk and entry.data["client_address"] == "203.0.113.9"


def test_reject_needs_a_reason(client, teams, approver):
    approval = make_approval(teams["ava"])
    client.force_login(approver)
    response = client.post(f"/inbox/{approval.pk}/reject/", {"reason": "  "}, headers=HX)
    assert "Say why you reject this" in response.text
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING
    response = client.post(
        f"/inbox/{approval.pk}/reject/", {"reason": "Call her instead."}, headers=HX
    )
    assert "Rejected by dana" in response.text and "Call her instead." in response.text


def test_edit_then_approve_records_the_edit(client, teams, approver):
    approval = make_approval(teams["ava"])
    client.force_login(approver)
    form = client.get(f"/inbox/{approval.pk}/edit/", headers=HX).text
    assert 'name="subject"' in form and "Your order" in form
    bad = client.post(
        f"/inbox/{approval.pk}/edit/approve/",
        {"to": "not-an-address", "subject": "s", "body": "b"},
        headers=HX,
    )
    assert "Enter a valid email address" in bad.text
    response = client.post(
        f"/inbox/{approval.pk}/edit/approve/",
        {"to": "ann@example.com", "subject": "Your order (shipped)", "body": "It shipped today."},
        headers=HX,
    )
    assert "Approved by dana" in response.text and "as edited" in response.text
    approval.refresh_from_db()
    assert approval.approved_arguments["subject"] == "Your order (shipped)"
    entry = AuditEntry.objects.get(action="approval.approved")
    assert entry.data["arguments_before"]["subject"] == "Your order"
    assert entry.data["arguments_after"]["subject"] == "Your order (shipped)"


def test_the_loser_of_a_second_decision_sees_who_decided_and_when(client, teams, approver):
    approval = make_approval(teams["ava"])
    other = UserFactory(username="eve")
    MembershipFactory(team=teams["support"], user=other, role="manager")
    approval_decide(approval=approval, user=other, decision="rejected", comment="Too early")
    client.force_login(approver)
    response = client.post(f"/inbox/{approval.pk}/approve/", headers=HX)
    assert "Already rejected by eve at" in response.text
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.REJECTED


def test_bulk_approve_and_reject(client, teams, approver):
    first, second, third = (make_approval(teams["ava"]) for _ in range(3))
    client.force_login(approver)
    response = client.post(
        "/inbox/bulk/", {"action": "approve", "selected": [first.pk, second.pk]}, headers=HX
    )
    assert "Approved 2 requests." in response["HX-Trigger"]
    assert (
        f'id="approval-{third.pk}"' in response.text
        and f'id="approval-{first.pk}"' not in response.text
    )
    response = client.post("/inbox/bulk/", {"action": "reject", "selected": [third.pk]}, headers=HX)
    assert "Say why you reject these" in response["HX-Trigger"]
    client.post(
        "/inbox/bulk/",
        {"action": "reject", "selected": [third.pk], "reason": "Not now"},
        headers=HX,
    )
    statuses = sorted(ApprovalRequest.objects.values_list("status", flat=True))
    assert statuses == ["approved", "approved", "rejected"]


def test_filters_and_search_update_the_list(client, teams, approver):
    MembershipFactory(team=teams["ops"], user=approver, role="approver")
    email = make_approval(teams["ava"], risk="high")
    http = make_approval(
        teams["rex"],
        tool="http_request",
        risk="medium",
        arguments={"method": "GET", "url": "https://status.example/"},
    )
    client.force_login(approver)

    def ids(params):
        return {a.pk for a in client.get("/inbox/", params, headers=HX).context["page"].object_list}

    assert ids({}) == {email.pk, http.pk}
    assert ids({"team": teams["ops"].pk}) == {http.pk}
    assert ids({"employee": teams["ava"].pk}) == {email.pk}
    assert ids({"risk": "medium"}) == {http.pk}
    assert ids({"q": "ava"}) == {email.pk}
    fragment = client.get("/inbox/", {"risk": "high"}, headers=HX).text
    assert fragment.lstrip().startswith('<section id="inbox-list"') and "<html" not in fragment


def test_the_navigation_badge_counts_what_waits(client, teams, approver):
    make_approval(teams["ava"])
    make_approval(teams["ava"])
    client.force_login(approver)
    assert 'aria-label="2 waiting for a decision">2</span>' in client.get("/employees/").text
    assert ">2</span>" in client.get("/inbox/count/", headers=HX).text


def test_inbox_queries_do_not_grow_with_the_page(
    client, teams, approver, django_assert_max_num_queries
):
    for _ in range(30):
        make_approval(teams["ava"])
    client.force_login(approver)
    with django_assert_max_num_queries(12):
        client.get("/inbox/")


def test_escalation_desk_answers_resume_the_task(client, teams, approver):
    from approvals.services import escalation_create

    task = make_approval(teams["ava"]).task
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.WAITING_ESCALATION)
    escalation = escalation_create(
        task=task,
        summary="Refund over the limit?",
        evidence=["Order 7: $900"],
        options=["Refund", "Decline"],
        recommendation="Decline",
    )
    client.force_login(approver)
    page = client.get("/inbox/escalations/").text
    assert "Refund over the limit?" in page and "Order 7: $900" in page
    response = client.post(
        f"/inbox/escalations/{escalation.pk}/answer/",
        {"option": "Decline", "answer": "Policy caps refunds at $500."},
        headers=HX,
    )
    assert "Answered by dana" in response.text
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_decisions_one_wins(teams, approver):
    approval = make_approval(teams["ava"])
    other = UserFactory(username="eve")
    results: list[str] = []
    barrier = threading.Barrier(2)

    def decide(user, decision):
        try:
            barrier.wait()
            approval_decide(
                approval=ApprovalRequest.objects.get(pk=approval.pk),
                user=user,
                decision=decision,
                comment="x",
            )
            results.append("won")
        except DecisionConflict:
            results.append("lost")
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=decide, args=(approver, "approved")),
        threading.Thread(target=decide, args=(other, "rejected")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(results) == ["lost", "won"]
    assert (
        AuditEntry.objects.filter(action__in=["approval.approved", "approval.rejected"]).count()
        == 1
    )


def test_inbox_page_needs_login(client):
    assert client.get(reverse("approvals:inbox")).status_code == 302


def test_an_employees_own_manager_decides_its_requests(client, teams):
    manager = UserFactory(username="mia")
    teams["ava"].manager = manager
    teams["ava"].save()
    approval = make_approval(teams["ava"])
    client.force_login(manager)
    assert f'id="approval-{approval.pk}"' in client.get("/inbox/").text
    assert client.post(f"/inbox/{approval.pk}/approve/", headers=HX).status_code == 200


def test_a_person_chooses_how_to_hear_about_new_requests(client, approver):
    from approvals.models import NotificationPreference

    client.force_login(approver)
    assert 'value="immediate" selected' in client.get("/inbox/").text
    response = client.post("/inbox/notifications/", {"mode": "digest"}, headers=HX)
    assert "Saved." in response.text and 'value="digest" selected' in response.text
    assert NotificationPreference.objects.get(user=approver).mode == "digest"
    response = client.post("/inbox/notifications/", {"mode": "carrier-pigeon"}, headers=HX)
    assert "Choose one of" in response.text
    assert NotificationPreference.objects.get(user=approver).mode == "digest"


# --- found in review ------------------------------------------------------------------------------


def test_a_non_email_action_can_be_edited_as_json_and_submitted_unchanged(client, teams, approver):
    from tests.factories import ToolGrantFactory

    ToolGrantFactory(
        employee=teams["ava"],
        tool_name="http_request",
        scope={"allowed_hosts": ["x.example"], "allowed_methods": ["POST"]},
    )
    approval = make_approval(
        teams["ava"],
        tool="http_request",
        arguments={"method": "POST", "url": "https://x.example/y", "body": "{}"},
    )
    client.force_login(approver)
    form = client.get(f"/inbox/{approval.pk}/edit/", headers=HX)
    text = form.context["arguments_text"]
    assert '"method": "POST"' in text
    bad = client.post(f"/inbox/{approval.pk}/edit/approve/", {"arguments": "{oops"}, headers=HX)
    assert "not valid JSON" in bad.text and "{oops" in bad.text  # the person's text is kept
    ok = client.post(f"/inbox/{approval.pk}/edit/approve/", {"arguments": text}, headers=HX)
    assert "Approved by dana" in ok.text


def test_an_edit_cannot_widen_the_grant(client, teams, approver):
    approval = make_approval(teams["ava"])
    client.force_login(approver)
    response = client.post(
        f"/inbox/{approval.pk}/edit/approve/",
        {"to": "boss@evil.test", "subject": "s", "body": "b"},
        headers=HX,
    )
    assert "outside what Ava may do" in response.text
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING


def test_cancelling_a_task_takes_its_requests_out_of_the_inbox(client, teams, approver):
    from aiworkforce.audit import Actor
    from tasks.services import task_cancel

    approval = make_approval(teams["ava"])
    task_cancel(task=approval.task, actor=Actor.system("t"), reason="no longer needed")
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.CANCELLED
    client.force_login(approver)
    assert f'id="approval-{approval.pk}"' not in client.get("/inbox/").text


def test_a_request_past_its_deadline_cannot_be_decided(client, teams, approver):
    from datetime import timedelta

    from django.utils import timezone

    approval = make_approval(teams["ava"])
    ApprovalRequest.objects.filter(pk=approval.pk).update(
        deadline=timezone.now() - timedelta(minutes=1)
    )
    client.force_login(approver)
    response = client.post(f"/inbox/{approval.pk}/approve/", headers=HX)
    assert "Its deadline has passed" in response.text
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING


def test_bulk_ignores_ids_that_are_not_numbers(client, teams, approver):
    client.force_login(approver)
    response = client.post(
        "/inbox/bulk/", {"action": "approve", "selected": ["²", "x"]}, headers=HX
    )
    assert response.status_code == 200 and "Select at least one request." in response["HX-Trigger"]


def test_an_expired_session_sends_htmx_requests_to_the_login_page(client):
    response = client.get("/inbox/count/", headers=HX)
    assert response.status_code == 204 and response["HX-Redirect"].startswith("/accounts/login/")


def test_fragments_count_only_when_a_decision_changes_the_counts(client, teams, approver):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    approval = make_approval(teams["ava"])
    client.force_login(approver)
    with CaptureQueriesContext(connection) as fragment:
        client.get(f"/inbox/{approval.pk}/edit/", headers=HX)
    assert not [q for q in fragment.captured_queries if "COUNT(" in q["sql"]]
    with CaptureQueriesContext(connection) as decision:
        client.post(f"/inbox/{approval.pk}/approve/", headers=HX)
    # Once for the badge's two numbers (approvals, escalations), not the layout's lazy count too.
    assert len([q for q in decision.captured_queries if "COUNT(" in q["sql"]]) == 2
    with CaptureQueriesContext(connection) as page:
        client.get("/employees/")
    assert [q for q in page.captured_queries if "COUNT(" in q["sql"]]  # a full page shows it
