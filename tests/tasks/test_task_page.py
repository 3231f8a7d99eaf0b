"""The task page tells the truth: failed steps, the final answer, one escalation, the wait."""

from __future__ import annotations

import json
import re
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from aiworkforce.llm.offline import OfflineEngine
from approvals.models import ApprovalRequest, ApprovalStatus, Escalation
from employees.demo import load_demo_workforce
from employees.models import Employee, WorkingWindow
from tasks.loop import run_task
from tasks.models import TaskStatus
from tasks.selectors import working_hours_resume
from tasks.services import task_create
from tests.factories import EmployeeFactory, MembershipFactory, UserFactory
from tests.fakes.openai_server import reply

pytestmark = pytest.mark.django_db

FETCH_SOP = [
    {"text": "Read the request."},
    {
        "text": "Fetch the order status.",
        "tool": {
            "name": "http_request",
            "arguments": {"method": "GET", "url": "http://127.0.0.1:9/"},
        },
    },
]


def _trace_tag(page: str) -> str:
    return re.search(r'<section id="trace"[^>]*>', page).group(0)


def _offline_task(employee, settings, sop, text="Where is order A-1002?"):
    settings.OPENAI_API_KEY = ""
    employee.sop = sop
    employee.save()
    task, _ = task_create(employee=employee, title="Order status", input=text, urgent=True)
    run_task(task.pk)
    task.refresh_from_db()
    return task


# --- a failed tool step ---------------------------------------------------------------------


def test_offline_engine_says_the_step_failed_instead_of_claiming_success():
    engine = OfflineEngine(sop=FETCH_SOP, title="Order", task_input="A-1002")
    messages = [
        {"role": "assistant", "tool_calls": [{"id": "offline_1"}]},
        {"role": "tool", "content": json.dumps({"error": "request failed: refused"})},
    ]
    text = engine.complete(messages=messages, tools=[], max_tokens=100, temperature=0).content
    first = text.splitlines()[0]
    assert "Followed" not in first
    assert first == (
        "[offline mode] The standard operating procedure was not completed: "
        "step 2 (http_request) failed."
    )
    assert "FAILED, not done: request failed: refused" in text


def test_offline_engine_still_reports_a_clean_run_as_followed():
    engine = OfflineEngine(sop=FETCH_SOP, title="Order", task_input="A-1002")
    messages = [
        {"role": "assistant", "tool_calls": [{"id": "offline_1"}]},
        {"role": "tool", "content": json.dumps({"status": 200, "summary": "GET 200"})},
    ]
    text = engine.complete(messages=messages, tools=[], max_tokens=100, temperature=0).content
    assert text.startswith("[offline mode] Followed the standard operating procedure:")


def test_done_task_with_a_failed_tool_step_is_done_with_errors(client, clerk, settings):
    task = _offline_task(clerk, settings, FETCH_SOP)
    assert task.status == TaskStatus.DONE
    assert "was not completed: step 2 (http_request) failed" in task.result
    client.force_login(MembershipFactory(team=clerk.team).user)
    page = client.get(f"/tasks/{task.pk}/").text
    assert 'data-outcome="done_with_errors"' in page and ">Done with errors<" in page
    assert ">Done<" not in page
    failed = re.findall(r'<li class="step step-tool_call step-failed" id="step-(\d+)"', page)
    assert len(failed) == 1
    assert f'href="#step-{failed[0]}"' in page  # the summary links to the failed step
    assert "http_request failed: request failed" in page


def test_the_list_marks_it_and_filters_done_with_errors(client, clerk, settings):
    task = _offline_task(clerk, settings, FETCH_SOP)
    clean = _offline_task(clerk, settings, [{"text": "Say hello"}], text="Hi")
    client.force_login(MembershipFactory(team=clerk.team).user)
    page = client.get("/tasks/").text
    row = page[page.index(f'data-task="{task.pk}"') :]
    assert row.index("Done with errors") < row.index("</li>")
    errors = client.get("/tasks/", {"status": "done_with_errors"}).text
    assert f'data-task="{task.pk}"' in errors and f'data-task="{clean.pk}"' not in errors


# --- the final answer, the escalation, the approval -----------------------------------------


def test_the_final_answer_text_is_in_the_trace(client, clerk, settings):
    task = _offline_task(clerk, settings, [{"text": "Say hello"}], text="Hi")
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{task.pk}/").text
    trace = page[page.index("<h2>Trace</h2>") :]
    final = trace[trace.index('class="step step-final"') :]
    assert "Final answer" in final
    assert '<pre class="result final-answer">[offline mode] Followed the standard' in final


@pytest.fixture
def escalated(settings):
    settings.OPENAI_API_KEY = ""
    load_demo_workforce()
    nia = Employee.objects.get(handle="nia-access")
    task, _ = task_create(
        employee=nia,
        title="Access to billing",
        input="Bob asks for admin access to billing.",
        urgent=True,
        dispatch=False,
    )
    run_task(task.pk)
    task.refresh_from_db()
    return task


def test_the_escalation_text_appears_once(client, escalated):
    assert escalated.status == TaskStatus.WAITING_ESCALATION
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{escalated.pk}/").text
    summary = Escalation.objects.get(task=escalated).summary
    assert summary.startswith("Access request needs a decision")
    assert page.count("Access request needs a decision") == 1
    assert 'href="#escalation-' in page  # the trace step points to it
    assert "/inbox/escalations/" in page or "escalation desk" in page


def test_a_waiting_page_does_not_poll(client, escalated):
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{escalated.pk}/").text
    trace = _trace_tag(page)
    assert 'data-live="false"' in trace and "every" not in trace
    # Only events refresh it: a decision on this page, the tree seeing a change, the tab shown.
    assert "task-changed from:body" in trace
    fragment = client.get(f"/tasks/{escalated.pk}/", headers={"HX-Request": "true"}).text
    assert "every" not in _trace_tag(fragment)


def test_a_finished_page_has_no_refresh_at_all(client, clerk, settings):
    task = _offline_task(clerk, settings, [{"text": "Say hello"}], text="Hi")
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{task.pk}/").text
    assert "hx-get" not in _trace_tag(page)
    assert "hx-trigger" not in re.search(r'<section id="task-tree"[^>]*>', page).group(0)


def test_the_tree_tells_the_trace_when_the_task_moved_on(client, escalated):
    client.force_login(UserFactory(is_superuser=True))
    url = f"/tasks/{escalated.pk}/tree/"
    same = client.get(url, {"shown": "waiting_escalation"}, headers={"HX-Request": "true"})
    assert "HX-Trigger" not in same.headers
    moved = client.get(url, {"shown": "running"}, headers={"HX-Request": "true"})
    assert "task-changed" in moved.headers["HX-Trigger"]


@pytest.fixture
def waiting_approval(model_server, clerk):
    model_server.enqueue(
        reply(
            tool_calls=[
                (
                    "send_email",
                    {"to": ["ann@example.com"], "subject": "Your order", "body": "On its way."},
                )
            ]
        )
    )
    task, _ = task_create(employee=clerk, title="Tell Ann", input="Tell Ann.", urgent=True)
    run_task(task.pk)
    task.refresh_from_db()
    assert task.status == TaskStatus.WAITING_APPROVAL
    return task


def test_an_approver_can_decide_from_the_task_page(client, waiting_approval):
    approver = MembershipFactory(team=waiting_approval.employee.team, role="approver").user
    client.force_login(approver)
    page = client.get(f"/tasks/{waiting_approval.pk}/").text
    approval = ApprovalRequest.objects.get(task=waiting_approval)
    assert f'id="approval-{approval.pk}"' in page
    assert f'hx-post="/inbox/{approval.pk}/approve/"' in page
    assert f"#approval-{approval.pk}" in page  # and a link to its inbox card
    assert "every" not in _trace_tag(page)
    response = client.post(f"/inbox/{approval.pk}/approve/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED


def test_a_member_who_does_not_decide_gets_a_link_not_buttons(client, waiting_approval):
    client.force_login(MembershipFactory(team=waiting_approval.employee.team, role="viewer").user)
    page = client.get(f"/tasks/{waiting_approval.pk}/").text
    approval = ApprovalRequest.objects.get(task=waiting_approval)
    assert "/approve/" not in page
    assert f"#approval-{approval.pk}" in page and "waiting for a decision" in page


# --- money, the profile link, working hours ------------------------------------------------


def test_money_has_one_format_and_the_employee_links_to_the_profile(client, clerk, settings):
    task = _offline_task(clerk, settings, [{"text": "Say hello"}], text="Hi")
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{task.pk}/").text
    assert "floatformat" not in page and not re.search(r"\$\d+\.\d{5,}", page)
    assert f'href="/employees/{clerk.handle}/"' in page


def test_waiting_for_working_hours_says_when_work_resumes(client, settings):
    employee = EmployeeFactory(status="active", timezone="Europe/Berlin", always_on=False)
    WorkingWindow.objects.create(employee=employee, weekday=0, start=time(9), end=time(17))
    task, _ = task_create(employee=employee, title="Later", input="When you can.")
    task.refresh_from_db()
    if task.status != TaskStatus.WAITING_HOURS:  # it happens to be Monday 9-17 in Berlin
        pytest.skip("inside the only working window right now")
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{task.pk}/").text
    assert re.search(r"Work resumes Mon \d+ \w+ 09:00 Europe/Berlin", page)
    assert "every" not in _trace_tag(page)


def test_resume_text_uses_the_next_window_in_the_employee_zone():
    employee = EmployeeFactory(status="active", timezone="Europe/Berlin", always_on=False)
    WorkingWindow.objects.create(employee=employee, weekday=0, start=time(9), end=time(17))
    task, _ = task_create(employee=employee, title="Later", input="x", dispatch=False)
    friday = datetime(2026, 1, 9, 18, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    text = working_hours_resume(task, now=friday)
    assert text.startswith("Work resumes Mon 12 Jan 09:00 Europe/Berlin (in 2\xa0days")
    monday = datetime(2026, 1, 12, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert "have begun" in working_hours_resume(task, now=monday)
    WorkingWindow.objects.filter(employee=employee).delete()
    assert "no working hours set" in working_hours_resume(task, now=friday)
