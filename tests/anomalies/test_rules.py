"""The anomaly rules, driven by the agent loop against the scripted model endpoint."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from anomalies.models import EmployeeRuleOverride, Rule, RuleSettings
from anomalies.services import anomalies_evaluate
from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from employees.models import EmployeeStatus
from employees.services import employee_activate
from tasks.loop import run_task
from tasks.models import Step, Task, TaskSource, TaskStatus
from tests.factories import UserFactory, assigned_task
from tests.fakes.openai_server import reply

# Transactions of their own, as in production: the loop's rows take the database's clock, which
# inside one test-wide transaction would stand still at the test's start.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def boss(clerk):
    """The clerk's manager, who hears about a pause."""
    user = UserFactory(username="boss-of-clerk", email="boss@example.com")
    clerk.manager = user
    clerk.save(update_fields=["manager"])
    return user


def _override(employee, rule: str, **values) -> EmployeeRuleOverride:
    return EmployeeRuleOverride.objects.create(employee=employee, rule=rule, **values)


def _paused(employee) -> bool:
    employee.refresh_from_db()
    return employee.status == EmployeeStatus.PAUSED


def _ping_calls(model_server, count: int):
    url = model_server.base_url + "/ping"
    return reply(tool_calls=[("http_request", {"method": "GET", "url": url})] * count)


def _escalate():
    return reply(tool_calls=[("escalate_to_human", {"summary": "Refund?", "options": ["Yes"]})])


def _email_call():
    return reply(
        tool_calls=[
            (
                "send_email",
                {"to": ["ann@example.com"], "subject": "Your order", "body": "It shipped."},
            )
        ]
    )


# --- defaults and the schedule ----------------------------------------------------------------


def test_the_schedule_and_the_defaults_exist_after_migrate():
    # A transactional test earlier in the run flushes what migrations wrote: write it again, as
    # the migration does, which also shows that running it twice is harmless.
    migration = import_module("anomalies.migrations.0002_default_rules_and_schedule")
    migration.register(django_apps, None)
    migration.register(django_apps, None)
    assert Schedule.objects.filter(name="anomaly-rules").count() == 1
    schedule = Schedule.objects.get(name="anomaly-rules")
    assert schedule.func == "anomalies.jobs.evaluate_rules"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 1, -1)
    assert set(RuleSettings.objects.values_list("rule", flat=True)) == set(Rule.values)
    assert RuleSettings.objects.get(rule=Rule.ERROR_STREAK).threshold == 5


# --- tool-call surge --------------------------------------------------------------------------


def test_tool_surge_pauses_with_its_figures_mails_the_manager_and_audits(
    model_server, clerk, boss, mailoutbox
):
    _override(clerk, Rule.TOOL_SURGE, threshold=4)
    model_server.enqueue(_ping_calls(model_server, 5), reply("Pinged."))
    assert run_task(assigned_task(clerk).pk) == TaskStatus.DONE

    assert anomalies_evaluate() == 1
    clerk.refresh_from_db()
    assert clerk.status == EmployeeStatus.PAUSED
    assert clerk.status_reason == (
        "Paused by the tool-call-surge rule: 5 calls of http_request in the last hour "
        "(limit 4 an hour)."
    )
    entry = AuditEntry.objects.get(action="anomaly.triggered")
    assert entry.subject_id == str(clerk.pk) and entry.actor_label == "anomaly rules"
    assert entry.data["rule"] == "tool_surge"
    assert entry.data["figures"] == {"tool": "http_request", "calls": 5, "threshold": 4}
    assert AuditEntry.objects.filter(action="employee.paused", subject_id=str(clerk.pk)).exists()
    [mail] = mailoutbox
    assert mail.to == ["boss@example.com"]
    assert "paused by the tool-call-surge rule" in mail.subject
    assert clerk.status_reason in mail.body and "/employees/clerk/" in mail.body


def test_tool_calls_at_the_threshold_do_not_pause(model_server, clerk):
    _override(clerk, Rule.TOOL_SURGE, threshold=5)
    model_server.enqueue(_ping_calls(model_server, 5), reply("Pinged."))
    run_task(assigned_task(clerk).pk)
    assert anomalies_evaluate() == 0
    assert not _paused(clerk)


def test_a_trigger_fires_once_and_a_resume_starts_a_new_window(
    model_server, clerk, boss, mailoutbox
):
    _override(clerk, Rule.TOOL_SURGE, threshold=2)
    model_server.enqueue(_ping_calls(model_server, 3), reply("Pinged."))
    run_task(assigned_task(clerk).pk)
    assert anomalies_evaluate() == 1
    assert anomalies_evaluate() == 0  # already paused: no second pause, no second mail
    assert len(mailoutbox) == 1

    clerk.refresh_from_db()
    employee_activate(employee=clerk, actor=Actor.for_user(boss))
    assert anomalies_evaluate() == 0  # the calls before the resume no longer count
    assert not _paused(clerk)

    model_server.enqueue(_ping_calls(model_server, 3), reply("Pinged again."))
    run_task(assigned_task(clerk, "Ping again").pk)
    assert anomalies_evaluate() == 1  # new calls after the resume do
    assert AuditEntry.objects.filter(action="anomaly.triggered").count() == 2


# --- spend spike --------------------------------------------------------------------------


def _age(task, by: timedelta) -> None:
    """Move a finished task and its steps back in time."""
    then = timezone.now() - by
    Step.objects.filter(task=task).update(created_at=then)
    Task.objects.filter(pk=task.pk).update(created_at=then, finished_at=then)


def test_spend_spike_over_k_times_the_usual_hour_and_the_floor_pauses(model_server, clerk):
    _override(clerk, Rule.SPEND_SPIKE, floor="0.01")  # K stays the default 5x
    # Yesterday's usual work: 1,000 + 500 tokens of gpt-4o-mini = $0.00045 in that hour.
    model_server.enqueue(reply("ok", prompt_tokens=1000, completion_tokens=500))
    usual = assigned_task(clerk, "Usual work")
    run_task(usual.pk)
    _age(usual, timedelta(days=1))
    # This hour: 100,000 + 2,000 tokens = $0.0162, 36x the usual hour.
    model_server.enqueue(reply("ok", prompt_tokens=100_000, completion_tokens=2_000))
    run_task(assigned_task(clerk, "Big work").pk)

    assert anomalies_evaluate() == 1
    clerk.refresh_from_db()
    assert clerk.status_reason == (
        "Paused by the spend-spike rule: $0.02 in the last hour, 36.0\N{MULTIPLICATION SIGN} its usual hourly p95 "
        "of $0.0005 (limit 5\N{MULTIPLICATION SIGN}, floor $0.01)."
    )
    figures = AuditEntry.objects.get(action="anomaly.triggered").data["figures"]
    assert figures["spent"] == "0.016200" and figures["p95"] == "0.000450"


def test_spend_under_the_floor_or_under_k_times_does_not_pause(model_server, clerk):
    model_server.enqueue(reply("ok", prompt_tokens=100_000, completion_tokens=2_000))
    old = assigned_task(clerk, "Last week's work")
    run_task(old.pk)
    _age(old, timedelta(days=2))
    model_server.enqueue(reply("ok", prompt_tokens=100_000, completion_tokens=2_000))
    run_task(assigned_task(clerk).pk)
    assert anomalies_evaluate() == 0  # $0.0162 is under the default floor of $1.00

    _override(clerk, Rule.SPEND_SPIKE, floor="0.01")
    assert anomalies_evaluate() == 0  # over the floor, but 1x the usual hour is under 5x
    assert not _paused(clerk)


def test_without_usual_spend_the_floor_alone_decides(model_server, clerk):
    _override(clerk, Rule.SPEND_SPIKE, floor="0.01")
    model_server.enqueue(reply("ok", prompt_tokens=100_000, completion_tokens=2_000))
    run_task(assigned_task(clerk).pk)
    assert anomalies_evaluate() == 1
    clerk.refresh_from_db()
    assert clerk.status_reason == (
        "Paused by the spend-spike rule: $0.02 in the last hour, with no spend in the 7 days "
        "before (limit 5\N{MULTIPLICATION SIGN}, floor $0.01)."
    )


# --- error streak -------------------------------------------------------------------------


def test_error_streak_of_escalations_and_failures_pauses(model_server, clerk):
    _override(clerk, Rule.ERROR_STREAK, threshold=3)
    for n in range(2):
        model_server.enqueue(_escalate())
        assert run_task(assigned_task(clerk, f"Refund {n}").pk) == TaskStatus.WAITING_ESCALATION
    assert anomalies_evaluate() == 0  # two in a row, the limit is three
    failed = assigned_task(clerk, "Broken")
    Task.objects.filter(pk=failed.pk).update(status=TaskStatus.FAILED, finished_at=timezone.now())
    assert anomalies_evaluate() == 1
    clerk.refresh_from_db()
    assert clerk.status_reason == (
        "Paused by the error-streak rule: its last 3 tasks ended badly in a row "
        "(1 failed, 2 escalated; limit 3)."
    )


def test_a_task_done_in_between_breaks_the_streak(model_server, clerk):
    _override(clerk, Rule.ERROR_STREAK, threshold=2)
    model_server.enqueue(_escalate(), reply("Done."), _escalate())
    for text in ("One", "Two", "Three"):
        run_task(assigned_task(clerk, text).pk)
    assert anomalies_evaluate() == 0
    assert not _paused(clerk)


def test_a_rule_disabled_for_one_employee_leaves_it_working(model_server, clerk):
    _override(clerk, Rule.ERROR_STREAK, threshold=1, enabled=False)
    model_server.enqueue(_escalate())
    run_task(assigned_task(clerk).pk)
    assert anomalies_evaluate() == 0
    RuleSettings.objects.filter(rule=Rule.ERROR_STREAK).update(threshold=1)
    EmployeeRuleOverride.objects.filter(employee=clerk).update(enabled=None)
    assert anomalies_evaluate() == 1  # the default now applies to it


# --- rejection streak -----------------------------------------------------------------------


def _propose_and_decide(model_server, clerk, decisions: list[str]) -> None:
    person = UserFactory(username="reviewer")
    for n, decision in enumerate(decisions):
        model_server.enqueue(_email_call(), reply("Understood."))
        task = assigned_task(clerk, f"Reply to customer {n}")
        assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL
        approval_decide(
            approval=ApprovalRequest.objects.get(task=task),
            user=person,
            decision=decision,
            comment="No." if decision == "rejected" else "",
        )
        run_task(task.pk)


def test_rejection_streak_pauses_when_people_reject_m_of_the_last_proposals(model_server, clerk):
    _propose_and_decide(model_server, clerk, ["rejected", "approved", "rejected", "rejected"])
    assert anomalies_evaluate() == 1  # the default: 3 of the last 5
    clerk.refresh_from_db()
    assert clerk.status_reason == (
        "Paused by the rejection-streak rule: people rejected 3 of its last 4 proposals "
        "(limit 3 of 5)."
    )


def test_fewer_rejections_or_a_higher_threshold_do_not_pause(model_server, clerk):
    _propose_and_decide(model_server, clerk, ["rejected", "approved", "rejected"])
    assert anomalies_evaluate() == 0
    _override(clerk, Rule.REJECTION_STREAK, threshold=2, sample=2)
    assert anomalies_evaluate() == 0  # of the last two, one was rejected
    EmployeeRuleOverride.objects.filter(employee=clerk).update(sample=3)
    assert anomalies_evaluate() == 1


# --- wake loop ------------------------------------------------------------------------------


def test_wake_loop_pauses_when_the_same_text_keeps_arriving(model_server, clerk):
    _override(clerk, Rule.WAKE_LOOP, threshold=3, window_minutes=5)
    for _ in range(3):
        assigned_task(clerk, "Webhook: order 17 updated")
    assigned_task(clerk, "Something else")
    assert anomalies_evaluate() == 0  # three times is the limit, not over it
    assigned_task(clerk, "Webhook: order 17 updated")
    assert anomalies_evaluate() == 1
    clerk.refresh_from_db()
    assert clerk.status_reason == (
        "Paused by the wake-loop rule: the same task text arrived 4 times in 5 minutes "
        "(limit 3): “Webhook: order 17 updated”."
    )


def test_wake_loop_counts_only_inside_its_window(model_server, clerk):
    _override(clerk, Rule.WAKE_LOOP, threshold=2, window_minutes=5)
    tasks = [assigned_task(clerk, "Same again") for _ in range(3)]
    Task.objects.filter(pk=tasks[0].pk).update(created_at=timezone.now() - timedelta(minutes=6))
    assert anomalies_evaluate() == 0
    assert not _paused(clerk)


# --- run_due --------------------------------------------------------------------------------


def test_run_due_runs_the_rules(model_server, clerk, capsys):
    _override(clerk, Rule.WAKE_LOOP, threshold=1)
    assigned_task(clerk, "Loop")
    assigned_task(clerk, "Loop")
    call_command("run_due")
    assert "1 employees paused by anomaly rules" in capsys.readouterr().out
    assert _paused(clerk)


def test_rejections_older_than_the_window_do_not_count(model_server, clerk):
    _propose_and_decide(model_server, clerk, ["rejected", "rejected", "rejected"])
    ApprovalRequest.objects.update(created_at=timezone.now() - timedelta(days=8))
    assert anomalies_evaluate() == 0  # the default window is the past 7 days
    _override(clerk, Rule.REJECTION_STREAK, window_minutes=9 * 24 * 60)
    assert anomalies_evaluate() == 1


def test_golden_task_evaluations_are_not_work_the_rules_count(model_server, clerk):
    _override(clerk, Rule.WAKE_LOOP, threshold=1)
    for _ in range(3):
        assigned_task(clerk, "Golden case 1", source=TaskSource.EVALUATION)
    assert anomalies_evaluate() == 0
    assert not _paused(clerk)
