"""In a real browser, with a real worker: an approver decides and the work resumes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from aiworkforce.models import AuditEntry
from approvals.models import ApprovalRequest
from employees.models import EmployeeStatus, ToolPolicy
from tasks.loop import run_task
from tasks.models import OutboxEmail, Task, TaskStatus
from tasks.services import task_create
from tests.aiworkforce.helpers import clean_env
from tests.browser.test_directory_browser import _log_in
from tests.factories import (
    EmployeeFactory,
    MembershipFactory,
    TeamFactory,
    ToolGrantFactory,
    UserFactory,
)
from tests.tasks.test_workers import Cluster, _test_database_url, _wait

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SOP = [
    {
        "text": "Reply",
        "tool": {
            "name": "send_email",
            "arguments": {
                "to": ["{first_email}"],
                "subject": "About {title}",
                "body": "Hello from support.",
            },
        },
    }
]


def _parked_tasks(employee, count: int) -> list[Task]:
    tasks = []
    for n in range(count):
        task, _ = task_create(
            employee=employee,
            title=f"Case {n}",
            input=f"Customer c{n}@example.com asks.",
            urgent=True,
            dispatch=False,
        )
        assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL
        tasks.append(task)
    return tasks


def test_approver_decides_and_the_tasks_resume_with_a_real_worker(page, live_server, settings):
    settings.OPENAI_API_KEY = ""
    support, ops = TeamFactory(name="Support"), TeamFactory(name="Ops")
    ava = EmployeeFactory(
        name="Ava", handle="ava", team=support, sop=SOP, status=EmployeeStatus.ACTIVE
    )
    rex = EmployeeFactory(name="Rex", handle="rex", team=ops, sop=SOP)
    for employee in (ava, rex):
        ToolGrantFactory(
            employee=employee,
            tool_name="send_email",
            scope={"allowed_domains": ["example.com"]},
            policy=ToolPolicy.NEEDS_APPROVAL,
        )
    mine = _parked_tasks(ava, 5)
    theirs = _parked_tasks(rex, 1)
    dana = UserFactory(username="dana")
    MembershipFactory(team=support, user=dana, role="approver")
    approvals = {a.task_id: a for a in ApprovalRequest.objects.all()}

    cluster = Cluster(clean_env(DATABASE_URL=_test_database_url(), OPENAI_API_KEY=""))
    try:
        _log_in(page, live_server, "dana")
        page.get_by_role("link", name=re.compile("Inbox")).click()
        expect(page.locator(".approval-row")).to_have_count(5)
        expect(page.locator(f"#approval-{approvals[theirs[0].pk].pk}")).to_have_count(0)
        expect(page.locator("#inbox-badge")).to_have_text("5")

        # 1. approve one as proposed
        row = page.locator(f"#approval-{approvals[mine[0].pk].pk}")
        row.get_by_role("button", name="Approve").click()
        expect(row).to_contain_text("Approved by dana")

        # 2. edit, then approve
        row = page.locator(f"#approval-{approvals[mine[1].pk].pk}")
        row.get_by_role("button", name="Edit…").click()
        row.get_by_label("Subject").fill("About your case (edited)")
        row.get_by_role("button", name="Approve as edited").click()
        expect(row.locator(".edited-badge")).to_have_text("Edited by dana")
        expect(row.locator(".proposal").first).to_contain_text("About your case (edited)")

        # 3. reject with a reason, using the keyboard
        row = page.locator(f"#approval-{approvals[mine[2].pk].pk}")
        row.focus()
        page.keyboard.press("r")
        page.keyboard.type("Call them instead.")
        page.keyboard.press("Enter")
        expect(row).to_contain_text("Rejected by dana")

        # 4. bulk-approve the last two
        for task in mine[3:]:
            page.locator(f"#approval-{approvals[task.pk].pk} input[type=checkbox]").check()
        page.get_by_role("button", name="Approve selected").click()
        expect(page.locator("#inbox-message")).to_have_text("Approved 2 requests.")

        # The real worker resumes every task; only approved emails go to the outbox.
        _wait(
            lambda: (
                Task.objects.filter(pk__in=[t.pk for t in mine], status=TaskStatus.DONE).count()
                == 5
            ),
            "tasks to resume",
        )
    finally:
        cluster.stop()
    emails = {e.task_id: e for e in OutboxEmail.objects.all()}
    assert set(emails) == {mine[0].pk, mine[1].pk, mine[3].pk, mine[4].pk}
    assert emails[mine[1].pk].subject == "About your case (edited)"
    # The rejection reason went back to the employee as the tool's result.
    assert "Call them instead." in Task.objects.get(pk=mine[2].pk).result
    decisions = AuditEntry.objects.filter(
        action__in=["approval.approved", "approval.rejected"], actor_user_id=dana.pk
    )
    assert decisions.count() == 5
    assert ApprovalRequest.objects.get(task=theirs[0]).status == "pending"


def test_inbox_works_on_a_phone(browser, live_server, settings):
    settings.OPENAI_API_KEY = ""
    support = TeamFactory(name="Support")
    ava = EmployeeFactory(name="Ava", handle="ava", team=support, sop=SOP)
    ToolGrantFactory(
        employee=ava,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.NEEDS_APPROVAL,
    )
    _parked_tasks(ava, 2)
    MembershipFactory(team=support, user=UserFactory(username="dana"), role="approver")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        _log_in(page, live_server, "dana")
        page.goto(f"{live_server.url}/inbox/")
        expect(page.locator(".approval-row")).to_have_count(2)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator(".approval-row").first.get_by_role("button", name="Approve").click()
        expect(page.locator(".approval-row").first).to_contain_text("Approved by dana")
        page.screenshot(path="test-artifacts/inbox-phone.png", full_page=True)
    finally:
        context.close()


def test_a_new_user_approves_the_demos_waiting_action_and_watches_the_task_finish(
    page, live_server, settings
):
    from employees.demo import load_demo_tasks, load_demo_workforce
    from employees.models import Team

    settings.OPENAI_API_KEY = ""
    load_demo_workforce()
    load_demo_tasks(base_url=live_server.url + "/")
    waiting = Task.objects.get(idempotency_key="demo:password-reset")
    assert run_task(waiting.pk) == TaskStatus.WAITING_APPROVAL
    newcomer = UserFactory(username="newcomer")
    MembershipFactory(
        team=Team.objects.get(name="Customer Support"), user=newcomer, role="approver"
    )

    cluster = Cluster(clean_env(DATABASE_URL=_test_database_url(), OPENAI_API_KEY=""))
    try:
        _log_in(page, live_server, "newcomer")
        page.get_by_role("link", name=re.compile("Inbox")).click()
        # The cluster works the demo's other tasks meanwhile: Ava's refund proposal may join
        # the inbox live, above this one (it is riskier), so the row is found by its id.
        reply = ApprovalRequest.objects.get(task=waiting)
        row = page.locator(f"#approval-{reply.pk}")
        expect(row).to_contain_text("jane@example.com")
        # Open the task in a second tab, then approve in the inbox.
        task_page = page.context.new_page()
        task_page.goto(f"{live_server.url}/tasks/{waiting.pk}/")
        expect(task_page.locator("span[data-status]")).to_have_text("Waiting for approval")
        task_page.evaluate("window.__noReload = true")
        row.get_by_role("button", name="Approve").click()
        expect(row).to_contain_text("Approved by newcomer")
        # A parked task's page does not poll; it refreshes when its tab is shown again.
        task_page.bring_to_front()
        task_page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        expect(task_page.locator("span[data-status]")).to_have_text("Done", timeout=15_000)
        expect(task_page.get_by_text("send_email done", exact=False)).to_be_visible()
        assert task_page.evaluate("window.__noReload") is True
    finally:
        cluster.stop()


def test_new_requests_appear_in_an_open_inbox_without_a_reload(page, live_server, settings):
    from tests.approvals.conftest import make_approval

    support = TeamFactory(name="Support")
    ava = EmployeeFactory(name="Ava", handle="ava", team=support)
    MembershipFactory(team=support, user=UserFactory(username="dana"), role="approver")
    _log_in(page, live_server, "dana")
    page.goto(f"{live_server.url}/inbox/")
    expect(page.get_by_text("Nothing is waiting for you")).to_be_visible()
    page.evaluate("window.__noReload = true")
    approval = make_approval(ava)
    expect(page.locator(f"#approval-{approval.pk}")).to_be_visible(timeout=12_000)
    expect(page.locator("#inbox-badge")).to_have_text("1", timeout=20_000)
    assert page.evaluate("window.__noReload") is True


def _watch_console(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def _open_escalation(employee):
    from approvals.services import escalation_create

    task, _ = task_create(employee=employee, title="Refund case", input="x", dispatch=False)
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.WAITING_ESCALATION)
    return escalation_create(
        task=task,
        summary="Refund over the limit?",
        evidence=["Order 7: $900"],
        options=["Refund", "Decline"],
        recommendation="Decline",
    )


@pytest.mark.parametrize(
    "viewport",
    [{"width": 1280, "height": 800}, {"width": 390, "height": 844}],
    ids=["desktop", "phone"],
)
def test_decisions_update_the_card_the_counters_and_the_badge_without_a_reload(
    browser, live_server, viewport
):
    from tests.approvals.conftest import make_approval

    support = TeamFactory(name="Support")
    ava = EmployeeFactory(name="Ava", handle="ava", team=support)
    ToolGrantFactory(
        employee=ava,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.NEEDS_APPROVAL,
    )
    first, edited, rejected = (make_approval(ava) for _ in range(3))
    _open_escalation(ava)
    MembershipFactory(team=support, user=UserFactory(username="dana"), role="approver")
    phone = viewport["width"] < 400
    context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone)
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems = _watch_console(page)
    badge, counts = page.locator("#inbox-badge"), page.locator("#desk-counts")
    try:
        _log_in(page, live_server, "dana")
        page.goto(f"{live_server.url}/inbox/")
        expect(badge).to_have_text("4")
        expect(counts.locator("[data-count=approvals]")).to_have_text("3")
        expect(counts.locator("[data-count=escalations]")).to_have_text("1")
        expect(page.locator("#inbox-list-count")).to_have_text("3")
        page.evaluate("window.__noReload = true")

        # Approve one as proposed: every counter follows at once.
        row = page.locator(f"#approval-{first.pk}")
        row.get_by_role("button", name="Approve").click()
        expect(row).to_contain_text("Approved by dana")
        expect(badge).to_have_text("3")
        expect(counts.locator("[data-count=approvals]")).to_have_text("2")
        expect(page.locator("#inbox-list-count")).to_have_text("2")

        # Edit, then approve: the card shows what runs, marked as edited; the proposal folds away.
        row = page.locator(f"#approval-{edited.pk}")
        row.get_by_role("button", name="Edit…").click()
        row.get_by_label("Subject").fill("Your order (edited by Dana)")
        row.get_by_label("To").fill("bob@example.com")
        row.get_by_role("button", name="Approve as edited").click()
        expect(row).to_contain_text("Approved by dana")
        expect(row.locator(".edited-badge")).to_have_text("Edited by dana")
        shown = row.locator(".proposal").first
        expect(shown).to_contain_text("Your order (edited by Dana)")
        expect(shown).to_contain_text("bob@example.com")
        expect(shown).not_to_contain_text("ann@example.com")
        expect(row.locator(".as-proposed .proposal")).to_be_hidden()
        row.get_by_text("As Ava proposed it").click()
        expect(row.locator(".as-proposed .proposal")).to_contain_text("ann@example.com")
        expect(badge).to_have_text("2")

        # Reject the last with a reason.
        row = page.locator(f"#approval-{rejected.pk}")
        row.get_by_label(f"Reason to reject request {rejected.pk}").fill("Call them instead.")
        row.get_by_role("button", name="Reject").click()
        expect(row).to_contain_text("Rejected by dana")
        expect(badge).to_have_text("1")
        expect(counts.locator("[data-count=approvals]")).to_have_text("0")
        assert page.evaluate("window.__noReload") is True
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        page.screenshot(path=f"test-artifacts/inbox-edited-{viewport['width']}.png", full_page=True)

        # The escalation desk: its counters and the badge follow an answer, too.
        counts.get_by_role("link", name="1 escalation open").click()
        expect(page.get_by_role("heading", name="Escalation desk")).to_be_visible()
        page.evaluate("window.__noReload = true")
        page.get_by_role("button", name="Decline").click()
        expect(page.locator(".escalation")).to_contain_text("Answered by dana")
        expect(counts.locator("[data-count=escalations]")).to_have_text("0")
        expect(badge).to_have_text("0")
        expect(badge).to_be_hidden()  # a zero badge is not shown
        assert page.evaluate("window.__noReload") is True
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        page.screenshot(path=f"test-artifacts/escalations-{viewport['width']}.png")
    finally:
        context.close()
    assert problems == []
