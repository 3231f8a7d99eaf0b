"""In a real browser, with real workers: a new manager assigns the onboarding request in the back
office, approves the one gated step in the inbox, and watches the linked requests complete."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from employees.demo import ONBOARDING_REQUEST, load_demo_workforce
from employees.models import Team
from tasks.models import Task, TaskStatus
from tests.aiworkforce.helpers import clean_env
from tests.browser.test_directory_browser import _log_in
from tests.factories import MembershipFactory, UserFactory
from tests.fakes.cluster import Cluster
from tests.tasks.test_workers import _test_database_url

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def newcomer(transactional_db, settings):
    settings.OPENAI_API_KEY = ""  # offline mode: the SOPs are followed literally
    load_demo_workforce()
    user = UserFactory(username="newcomer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["add_task", "view_task", "view_employee"],
        )
    )
    MembershipFactory(team=Team.objects.get(name="Onboarding"), user=user, role="manager")
    return user


def test_a_new_manager_assigns_onboarding_approves_once_and_sees_the_tree_complete(
    page, live_server, newcomer
):
    cluster = Cluster(
        clean_env(DATABASE_URL=_test_database_url(), OPENAI_API_KEY="", Q_WORKERS="3")
    )
    try:
        _log_in(page, live_server, "newcomer")
        # 1. Assign the request to the coordinator in the back office.
        page.goto(f"{live_server.url}/admin/tasks/task/add/")
        page.locator(".field-employee .select2-selection").click()
        page.locator(".select2-search__field").fill("olivia")
        page.locator(".select2-results__option", has_text="Olivia").click()
        page.get_by_label("Title").fill("Onboard the new analyst")
        page.get_by_label("Instructions").fill(ONBOARDING_REQUEST)
        page.get_by_label("Urgent").check()
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text("Assigned task #")
        root = Task.objects.get(employee__handle="olivia-onboarding")

        # 2. The coordinator's page shows the linked requests as they are created and run.
        page.goto(f"{live_server.url}/tasks/{root.pk}/")
        tree = page.locator("#task-tree")
        expect(tree.locator(".tree-node")).to_have_count(4, timeout=30_000)
        ivan = tree.locator(".tree-node", has_text="@ivan-it")
        expect(ivan.locator("[data-tree-status]")).to_have_text(
            "Waiting for approval", timeout=30_000
        )
        # Eventually: HR and facilities reporting wakes the coordinator, which takes a worker
        # a moment to run and park again (still waiting for IT).
        expect(page.locator("[data-status]")).to_have_text(
            "Waiting for delegated work", timeout=30_000
        )

        # 3. The one gated step: IT's laptop order, approved in the inbox.
        page.get_by_role("link", name=re.compile("Inbox")).click()
        row = page.locator(".approval-row")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("procurement@example.com")
        row.get_by_role("button", name="Approve").click()
        expect(row).to_contain_text("Approved by newcomer")

        # 4. Back on the coordinator's page: every linked request completes, live.
        page.goto(f"{live_server.url}/tasks/{root.pk}/")
        page.evaluate("window.__noReload = true")
        expect(page.locator("[data-status]")).to_have_text("Done", timeout=30_000)
        expect(tree.locator("[data-tree-status='done']")).to_have_count(4, timeout=10_000)
        expect(page.locator("pre.result:not(.final-answer)")).to_contain_text(
            "What the delegated requests reported"
        )
        assert page.evaluate("window.__noReload") is True
        page.screenshot(path="test-artifacts/delegation-tree.png", full_page=True)
    finally:
        cluster.stop()
    assert Task.objects.get(pk=root.pk).status == TaskStatus.DONE


def test_org_chart_and_task_tree_work_on_a_phone(browser, live_server, newcomer):
    from employees.models import Employee
    from tasks.services import task_create

    root, _ = task_create(
        employee=Employee.objects.get(handle="olivia-onboarding"),
        title="Onboard",
        input="x",
        dispatch=False,
    )
    task_create(
        employee=Employee.objects.get(handle="ivan-it"),
        title="A laptop with a rather long title for a narrow screen",
        input="y",
        parent=root,
        dispatch=False,
    )
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        _log_in(page, live_server, "newcomer")
        page.get_by_role("link", name="Org chart").click()
        expect(page.locator(".org-member")).to_have_count(4)
        expect(page.locator(".org-member[data-handle='ivan-it'] [data-work]")).to_contain_text(
            "Has queued work"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path="test-artifacts/org-chart-phone.png", full_page=True)
        page.goto(f"{live_server.url}/tasks/{root.pk}/")
        expect(page.locator(".tree-node")).to_have_count(2)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
