"""After a decision, the page tells the truth without a reload: the card shows what runs, and
the counters and the navigation badge come along in the same response, swapped out of band."""

from __future__ import annotations

import re

import pytest

from approvals.services import escalation_create
from tasks.models import Task, TaskStatus
from tests.approvals.conftest import make_approval

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}
FROM_INBOX = {**HX, "HX-Current-URL": "http://testserver/inbox/?q=ava"}
FROM_DESK = {**HX, "HX-Current-URL": "http://testserver/inbox/escalations/"}


def _oob(html: str, element_id: str) -> str:
    """The out-of-band element with this id in a response ('' when there is none)."""
    found = re.search(rf'<(\w+) id="{element_id}"[^>]*hx-swap-oob="true".*?</\1>', html, re.S)
    return found.group(0) if found else ""


def _escalation(employee):
    task = make_approval(employee).task
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.WAITING_ESCALATION)
    return escalation_create(
        task=task,
        summary="Refund over the limit?",
        evidence=[],
        options=["Refund", "Decline"],
        recommendation="Decline",
    )


def test_after_edit_then_approve_the_card_shows_what_runs_marked_as_edited(client, teams, approver):
    approval = make_approval(teams["ava"])
    client.force_login(approver)
    card = client.post(
        f"/inbox/{approval.pk}/edit/approve/",
        {"to": "bob@example.com", "subject": "Your order (shipped)", "body": "It shipped today."},
        headers=FROM_INBOX,
    ).text
    sent = card[: card.index('<details class="as-proposed">')]
    proposed = card[card.index('<details class="as-proposed">') : card.index("</details>")]
    assert "Edited by dana" in sent and "changed: to, subject" in sent
    assert "bob@example.com" in sent and "Your order (shipped)" in sent
    assert "ann@example.com" not in sent  # the proposal is only under "As Ava proposed it"
    assert "As Ava proposed it" in proposed and "ann@example.com" in proposed
    assert "Approved by dana" in card and "as edited" in card


def test_a_card_approved_as_proposed_says_nothing_of_edits(client, teams, approver):
    approval = make_approval(teams["ava"])
    client.force_login(approver)
    card = client.post(f"/inbox/{approval.pk}/approve/", headers=FROM_INBOX).text
    assert "Approved by dana" in card and "Edited by" not in card and "as-proposed" not in card


def test_a_decision_brings_the_badge_the_desk_counts_and_the_list_count(client, teams, approver):
    first, second = make_approval(teams["ava"]), make_approval(teams["ava"])
    make_approval(teams["rex"])  # another team's: never counted here
    _escalation(teams["ava"])
    client.force_login(approver)
    page = client.get("/inbox/").text
    assert 'data-count="approvals">3</strong>' in page  # the escalation's task asked too
    assert 'data-count="escalations">1</strong>' in page
    assert ">4</span>" in page  # the navigation badge

    response = client.post(
        f"/inbox/{first.pk}/approve/", {"q": "", "risk": "high"}, headers=FROM_INBOX
    ).text
    assert response.lstrip().startswith('<article class="approval-row')
    assert ">3</span>" in _oob(response, "inbox-badge")
    desk = _oob(response, "desk-counts")
    assert 'data-count="approvals">2</strong>' in desk
    assert 'data-count="escalations">1</strong>' in desk
    assert ">2</span>" in _oob(response, "inbox-list-count")

    # The list's count follows the filters the page shows (sent along with the decision).
    response = client.post(
        f"/inbox/{second.pk}/reject/",
        {"reason": "Call instead.", "q": "no such words"},
        headers=FROM_INBOX,
    ).text
    assert ">0</span>" in _oob(response, "inbox-list-count")
    assert 'data-count="approvals">1</strong>' in _oob(response, "desk-counts")


def test_a_decision_from_another_page_brings_only_the_badge(client, teams, approver):
    approval = make_approval(teams["ava"])
    client.force_login(approver)
    headers = {**HX, "HX-Current-URL": f"http://testserver/tasks/{approval.task_id}/"}
    response = client.post(f"/inbox/{approval.pk}/approve/", headers=headers).text
    assert ">0</span>" in _oob(response, "inbox-badge")
    # Pages without the counters get no out-of-band element without a target (a console error).
    assert "desk-counts" not in response and "inbox-list-count" not in response


def test_opening_the_editor_changes_no_count_and_brings_none(client, teams, approver):
    approval = make_approval(teams["ava"])
    client.force_login(approver)
    response = client.get(f"/inbox/{approval.pk}/edit/", headers=FROM_INBOX).text
    assert "hx-swap-oob" not in response


def test_the_polled_list_keeps_the_desk_counts_current(client, teams, approver):
    client.force_login(approver)
    assert 'data-count="approvals">0</strong>' in client.get("/inbox/").text
    make_approval(teams["ava"])
    fragment = client.get("/inbox/", headers=FROM_INBOX).text
    assert fragment.lstrip().startswith('<section id="inbox-list"')
    assert 'data-count="approvals">1</strong>' in _oob(fragment, "desk-counts")
    assert ">1</span>" in _oob(fragment, "inbox-badge")


def test_bulk_decisions_bring_the_counts(client, teams, approver):
    approvals = [make_approval(teams["ava"]) for _ in range(3)]
    client.force_login(approver)
    response = client.post(
        "/inbox/bulk/",
        {"action": "approve", "selected": [a.pk for a in approvals[:2]]},
        headers=FROM_INBOX,
    ).text
    assert 'data-count="approvals">1</strong>' in _oob(response, "desk-counts")
    assert ">1</span>" in _oob(response, "inbox-badge")


def test_answering_an_escalation_updates_the_desk_counts_and_the_badge(client, teams, approver):
    escalation = _escalation(teams["ava"])
    client.force_login(approver)
    page = client.get("/inbox/escalations/").text
    assert 'data-count="escalations">1</strong>' in page
    assert 'aria-current="page"><strong data-count="escalations">' in page
    response = client.post(
        f"/inbox/escalations/{escalation.pk}/answer/", {"option": "Decline"}, headers=FROM_DESK
    ).text
    assert "Answered by dana" in response
    desk = _oob(response, "desk-counts")
    assert 'data-count="escalations">0</strong>' in desk
    assert 'aria-current="page"><strong data-count="escalations">' in desk
    assert ">1</span>" in _oob(response, "inbox-badge")  # the escalation task's own approval
