"""In a real browser: the task page follows the work live, without a reload."""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connections
from playwright.sync_api import expect

from employees.demo import load_demo_workforce
from employees.models import Employee, Team
from tasks.loop import run_task
from tasks.services import task_create
from tests.browser.test_directory_browser import _log_in
from tests.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_task_page_shows_steps_as_they_happen_and_the_result(page, live_server, settings):
    settings.OPENAI_API_KEY = ""  # offline mode: the SOP is followed literally
    load_demo_workforce()
    user = UserFactory(username="lee")
    MembershipFactory(team=Team.objects.get(name="IT Operations"), user=user, role="approver")
    nia = Employee.objects.get(handle="nia-access")
    task, _ = task_create(
        employee=nia,
        title="Access to billing",
        input="Sam wants billing access.",
        urgent=True,
        dispatch=False,
    )
    _log_in(page, live_server, "lee")
    page.goto(f"{live_server.url}/tasks/{task.pk}/")
    expect(page.locator("[data-status]")).to_have_text("Queued")
    expect(page.get_by_text("No steps yet")).to_be_visible()
    page.evaluate("window.__noReload = true")

    worker = threading.Thread(target=lambda: (run_task(task.pk), connections.close_all()))
    worker.start()
    worker.join(timeout=30)

    # The trace polls itself: the escalation and its steps appear without a reload.
    expect(page.locator("[data-status]")).to_have_text("Escalated", timeout=10_000)
    expect(
        page.get_by_text(re.compile(r"Escalates to a person: Access request needs a decision"))
    ).to_be_visible()
    expect(page.get_by_text("offline engine", exact=False).first).to_be_visible()
    assert page.evaluate("window.__noReload") is True
    page.screenshot(path="test-artifacts/task-page.png", full_page=True)


def test_a_person_of_another_team_gets_not_found(page, live_server, transactional_db):
    load_demo_workforce()
    outsider = UserFactory(username="outsider")
    MembershipFactory(team=Team.objects.get(name="Customer Support"), user=outsider)
    task, _ = task_create(
        employee=Employee.objects.get(handle="rex-it-ops"),
        title="Secret",
        input="x",
        dispatch=False,
    )
    _log_in(page, live_server, "outsider")
    response = page.goto(f"{live_server.url}/tasks/{task.pk}/")
    assert response.status == 404
