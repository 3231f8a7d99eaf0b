"""The activation gate: a brief version goes live only when its pass rate is at least the live
one's, or with a manager's reason; brief edits of an employee with golden tasks become drafts."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import OrmQ

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from employees.models import BriefVersion, EmployeeStatus, TeamRole
from employees.services import brief_changes_gated, brief_version_draft, employee_update
from evaluations.activation import ActivationRefused, brief_version_activate
from evaluations.jobs import evaluate as evaluate_job
from evaluations.models import CaseResult, EvaluationRun
from evaluations.services import evaluation_run, golden_task_create
from tests.factories import EmployeeFactory, MembershipFactory, ToolGrantFactory, UserFactory

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tests")
REPLY_STEP = {
    "text": "Reply to the customer.",
    "tool": {
        "name": "send_email",
        "arguments": {"to": ["{first_email}"], "subject": "Re: {title}", "body": "Refunded."},
    },
}
THINK_STEP = {"text": "Think it over."}


@pytest.fixture
def offline(settings):
    settings.OPENAI_API_KEY = ""  # the offline engine follows the SOP of the version run


@pytest.fixture
def clerk(db):
    employee = EmployeeFactory(handle="clerk", status=EmployeeStatus.ACTIVE, sop=[REPLY_STEP])
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy="needs_approval",
    )
    BriefVersion.objects.create(
        employee=employee,
        number=1,
        brief=employee.brief,
        sop=employee.sop,
        activated_at=timezone.now(),
    )
    golden_task_create(
        employee=employee,
        title="Refund",
        input="Refund ann@example.com for order A-1.",
        expectations={"calls": [{"tool": "send_email", "arguments": {"to": ["ann@example.com"]}}]},
    )
    return employee


@pytest.fixture
def manager(clerk):
    user = UserFactory(username="mona")
    MembershipFactory(team=clerk.team, user=user, role=TeamRole.MANAGER)
    return user


def draft(employee, sop) -> BriefVersion:
    return brief_version_draft(employee=employee, actor=ACTOR, changes={"sop": sop})


def activate(employee, version, reason=""):
    return brief_version_activate(
        employee=employee, version=version, actor=ACTOR, override_reason=reason
    )


def test_a_brief_change_of_an_employee_with_golden_tasks_is_a_draft(clerk):
    version = draft(clerk, [THINK_STEP])
    clerk.refresh_from_db()
    assert version.number == 2 and version.is_draft and version.sop == [THINK_STEP]
    assert clerk.sop == [REPLY_STEP]  # the live brief is untouched
    entry = AuditEntry.objects.get(action="brief_version.drafted")
    assert entry.data == {"handle": "clerk", "version": 2, "fields": ["sop"]}
    with pytest.raises(ValueError, match="employee_edit"):
        employee_update(employee=clerk, actor=ACTOR, changes={"sop": [THINK_STEP]})


def test_a_draft_is_validated_like_the_employee(clerk):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        draft(clerk, [{"no_text": True}])
    with pytest.raises(ValidationError, match="same as the live brief"):
        draft(clerk, [REPLY_STEP])
    assert clerk.brief_versions.count() == 1


def test_a_draft_that_was_never_evaluated_is_refused_with_the_command(offline, clerk):
    version = draft(clerk, [REPLY_STEP, THINK_STEP])
    with pytest.raises(ActivationRefused) as refused:
        activate(clerk, version)
    assert "Evaluate v2 first (./workforce manage evaluate clerk --brief-version 2)" in str(
        refused.value
    )
    assert not AuditEntry.objects.filter(action="brief_version.activated").exists()


def test_a_worse_draft_is_refused_and_an_override_needs_a_reason(offline, clerk):
    assert evaluation_run(employee=clerk).passed == 1  # v1, the live one: 1/1
    worse = draft(clerk, [THINK_STEP])
    assert evaluation_run(employee=clerk, brief_version=2).passed == 0
    with pytest.raises(ActivationRefused, match=r"v2 passes 0/1 \(0%.*below the live v1 passes"):
        activate(clerk, worse)
    with pytest.raises(ActivationRefused, match="reason of at least 10 characters"):
        activate(clerk, worse, reason="because")
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP]

    activate(clerk, worse, reason="The refund case is obsolete; policy changed on 1 Dec.")

    clerk.refresh_from_db()
    assert clerk.sop == [THINK_STEP]
    entry = AuditEntry.objects.get(action="brief_version.activated")
    assert entry.data["version"] == 2 and entry.data["previous"] == 1
    assert entry.data["rate"] == 0 and entry.data["previous_rate"] == 1
    assert entry.data["override_reason"].startswith("The refund case is obsolete")
    assert "below the live" in entry.data["gate"]


def test_an_equal_or_better_draft_goes_live_without_a_reason(offline, clerk):
    evaluation_run(employee=clerk)
    better = draft(clerk, [REPLY_STEP, THINK_STEP])
    evaluation_run(employee=clerk, brief_version=2)
    activate(clerk, better)
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP, THINK_STEP]
    entry = AuditEntry.objects.get(action="brief_version.activated")
    assert entry.data["gate"] == "passed" and entry.data["override_reason"] == ""
    # Evaluating with no --brief-version now runs the live v2, not the latest draft.
    draft(clerk, [THINK_STEP])
    assert evaluation_run(employee=clerk).brief_version == 2
    with pytest.raises(ActivationRefused, match="already the live brief"):
        activate(clerk, better, reason="once more, with a reason")


def test_rolling_back_to_an_earlier_version_passes_the_same_gate(offline, clerk):
    evaluation_run(employee=clerk)
    v2 = draft(clerk, [REPLY_STEP, THINK_STEP])
    evaluation_run(employee=clerk, brief_version=2)
    activate(clerk, v2)
    activate(clerk, BriefVersion.objects.get(employee=clerk, number=1))  # 1/1 >= 1/1
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP]


def test_without_golden_tasks_brief_changes_go_live_at_once(db):
    employee = EmployeeFactory(handle="solo", status=EmployeeStatus.ACTIVE)
    employee_update(employee=employee, actor=ACTOR, changes={"tone": "Warm."})
    version = employee.brief_versions.get()
    assert not version.is_draft and version.brief["tone"] == "Warm."


# --- the page ----------------------------------------------------------------------------------


def test_the_page_lists_versions_and_a_manager_activates_a_better_draft(
    offline, client, clerk, manager
):
    evaluation_run(employee=clerk)
    draft(clerk, [REPLY_STEP, THINK_STEP])
    client.force_login(manager)
    page = client.get("/evaluations/clerk/").text
    assert 'data-version-row="2" data-state="draft"' in page
    assert 'data-version-row="1" data-state="live"' in page
    assert "data-evaluate" in page and "/evaluations/clerk/versions/2/evaluate/" in page
    evaluation_run(employee=clerk, brief_version=2)

    response = client.post(
        "/evaluations/clerk/versions/2/activate/", headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert "v2 is now the live brief." in response.text
    assert 'data-version-row="2" data-state="live"' in response.text
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP, THINK_STEP]


def test_the_page_shows_a_refusal_in_place_and_accepts_a_reason(offline, client, clerk, manager):
    evaluation_run(employee=clerk)
    draft(clerk, [THINK_STEP])
    evaluation_run(employee=clerk, brief_version=2)
    client.force_login(manager)
    assert "data-activate-anyway" in client.get("/evaluations/clerk/").text

    refused = client.post("/evaluations/clerk/versions/2/activate/", headers={"HX-Request": "true"})
    assert refused.status_code == 200 and "data-activation-error" in refused.text
    assert "below the live v1" in refused.text
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP]

    client.post(
        "/evaluations/clerk/versions/2/activate/",
        {"override_reason": "Refunds now go through finance; the case is obsolete."},
        headers={"HX-Request": "true"},
    )
    clerk.refresh_from_db()
    assert clerk.sop == [THINK_STEP]


def test_only_managers_may_activate_and_others_see_no_button(offline, client, clerk):
    draft(clerk, [REPLY_STEP, THINK_STEP])
    approver = UserFactory(username="amy")
    MembershipFactory(team=clerk.team, user=approver, role=TeamRole.APPROVER)
    client.force_login(approver)
    page = client.get("/evaluations/clerk/").text
    assert "data-activate" not in page and "data-evaluate" not in page
    assert "./workforce manage evaluate clerk --brief-version 2" in page
    assert client.post("/evaluations/clerk/versions/2/evaluate/").status_code == 302
    assert not OrmQ.objects.exists()
    response = client.post("/evaluations/clerk/versions/2/activate/", {"override_reason": "x" * 20})
    assert response.status_code == 302
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP]
    assert not AuditEntry.objects.filter(action="brief_version.activated").exists()
    outsider = UserFactory(username="out")
    client.force_login(outsider)
    assert client.post("/evaluations/clerk/versions/2/activate/").status_code == 404
    client.force_login(approver)
    assert client.post("/evaluations/clerk/versions/9/activate/").status_code == 404


def test_a_manager_evaluates_a_draft_on_the_workers_and_the_card_follows_it(
    offline, client, clerk, manager, django_capture_on_commit_callbacks
):
    draft(clerk, [REPLY_STEP, THINK_STEP])
    client.force_login(manager)
    url = "/evaluations/clerk/versions/2/evaluate/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, headers={"HX-Request": "true"})
    assert (
        response.status_code == 200
        and "is queued and starts when a worker is free" in response.text
    )
    assert "every 3s [document.visibilityState === 'visible']" in response.text  # it polls
    (queued,) = EvaluationRun.objects.all()
    (job,) = OrmQ.objects.all()
    assert (job.task["func"], job.task["args"]) == ("evaluations.jobs.evaluate", (queued.pk,))
    assert AuditEntry.objects.get(action="evaluation.requested").data["run"] == queued.pk

    # A second click while it waits or runs queues nothing.
    again = client.post(url, headers={"HX-Request": "true"})
    assert f"already running (run #{queued.pk})" in again.text
    assert OrmQ.objects.count() == 1 and EvaluationRun.objects.count() == 1

    assert evaluate_job(queued.pk) == f"run #{queued.pk}: 1/1 passed"
    # django-q2 may deliver a job again (a worker killed at its timeout): nothing runs twice.
    assert evaluate_job(queued.pk).startswith(f"refused: Evaluation run #{queued.pk} was taken")
    assert CaseResult.objects.count() == 1
    card = client.get("/evaluations/clerk/versions/").text
    assert "every 3s" not in card and "Passes 1/1 (100%)" in card


def test_a_live_version_never_evaluated_must_be_evaluated_before_the_comparison(offline, clerk):
    zero = draft(clerk, [THINK_STEP])
    evaluation_run(employee=clerk, brief_version=2)  # 0/1, and v1 has no run at all
    with pytest.raises(ActivationRefused, match=r"Evaluate the live v1 too.*--brief-version 1"):
        activate(clerk, zero)
    evaluation_run(employee=clerk, brief_version=1)
    with pytest.raises(ActivationRefused, match="below the live v1"):
        activate(clerk, zero)


def test_runs_on_other_golden_tasks_or_another_model_are_not_compared(offline, clerk, settings):
    evaluation_run(employee=clerk)  # v1: 1/1
    same = draft(clerk, [REPLY_STEP, THINK_STEP])
    evaluation_run(employee=clerk, brief_version=2)  # 1/1
    golden_task_create(
        employee=clerk,
        title="New case",
        input="Tell bob@example.com his order shipped.",
        expectations={"escalates": True},
    )
    with pytest.raises(ActivationRefused, match="Evaluate v2 again: the golden tasks or the model"):
        activate(clerk, same)
    evaluation_run(employee=clerk, brief_version=2)  # 1/2 on the new set
    with pytest.raises(ActivationRefused, match="Evaluate the live v1 too"):
        activate(clerk, same)
    evaluation_run(employee=clerk, brief_version=1)  # 1/2 as well: equal, so it may go live
    activate(clerk, same)
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP, THINK_STEP]


def test_a_draft_made_from_an_older_live_version_would_undo_the_newer_one(offline, clerk):
    evaluation_run(employee=clerk)
    tone = brief_version_draft(employee=clerk, actor=ACTOR, changes={"tone": "Warm."})
    goals = brief_version_draft(employee=clerk, actor=ACTOR, changes={"goals": "Be quick."})
    assert tone.based_on == goals.based_on == 1
    for number in (2, 3):
        evaluation_run(employee=clerk, brief_version=number)
    activate(clerk, tone)
    with pytest.raises(ActivationRefused, match="drafted from v1, but v2 is live now"):
        activate(clerk, goals)
    activate(clerk, goals, reason="Tone change is reverted on purpose, goals matter more.")
    clerk.refresh_from_db()
    assert clerk.goals == "Be quick." and clerk.tone != "Warm."


def test_a_version_that_no_longer_validates_is_refused_not_a_500(offline, client, clerk, manager):
    BriefVersion.objects.create(employee=clerk, number=2, brief={}, sop=[{"no_text": 1}])
    client.force_login(manager)
    response = client.post(
        "/evaluations/clerk/versions/2/activate/",
        {"override_reason": "Going back to an old brief on purpose."},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200 and "v2 is no longer a valid brief" in response.text
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP]


def test_a_paused_employee_s_fix_passes_the_gate_and_a_draft_employee_is_not_gated(offline, clerk):
    clerk.status = EmployeeStatus.PAUSED  # say, by an anomaly rule
    clerk.save()
    evaluation_run(employee=clerk)
    fix = draft(clerk, [REPLY_STEP, THINK_STEP])
    evaluation_run(employee=clerk, brief_version=2)
    activate(clerk, fix)
    clerk.refresh_from_db()
    assert clerk.sop == [REPLY_STEP, THINK_STEP] and clerk.status == EmployeeStatus.PAUSED

    newcomer = EmployeeFactory(handle="newcomer", status=EmployeeStatus.DRAFT)
    golden_task_create(
        employee=newcomer, title="Case", input="Say hi.", expectations={"escalates": False}
    )
    assert not brief_changes_gated(newcomer)
    employee_update(employee=newcomer, actor=ACTOR, changes={"tone": "Warm."})
    newcomer.refresh_from_db()
    assert newcomer.tone == "Warm."


# --- the command (the back office's drafts: tests/employees/test_admin.py) -----------------------------------------------------------


def test_the_command_activates_through_the_gate(offline, clerk):
    evaluation_run(employee=clerk)
    draft(clerk, [THINK_STEP])
    evaluation_run(employee=clerk, brief_version=2)
    with pytest.raises(CommandError, match="below the live v1"):
        call_command("activate_brief", "clerk", "2")
    with pytest.raises(CommandError, match="has no brief version 5 \\(versions 1 to 2\\)"):
        call_command("activate_brief", "clerk", "5")
    out = StringIO()
    call_command(
        "activate_brief", "@clerk", "2", "--override-reason", "Obsolete case, replaced.", stdout=out
    )
    assert "v2 is now the live brief of @clerk." in out.getvalue()
    entry = AuditEntry.objects.get(action="brief_version.activated")
    assert entry.actor_label == "command line" and entry.data["override_reason"]
