"""Golden tasks come with a role template: hiring creates them, the offline engine passes them,
a broken case is refused naming the template and the case, and team files carry them."""

from __future__ import annotations

import json
from dataclasses import replace
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from aiworkforce.models import AuditEntry
from employees.hiring.catalogue import read_template, template, template_paths
from employees.hiring.golden import GoldenSpec
from employees.hiring.selectors import team_file
from employees.hiring.services import employee_hire, team_import, template_hire_team
from employees.hiring.spec import SpecError, load_employee
from employees.models import Employee, TeamRole
from evaluations.models import GoldenTask
from evaluations.services import evaluation_run
from tests.employees.test_hiring import HX, form_values, step
from tests.factories import MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db
SLUGS = [path.stem for path in template_paths()]


@pytest.fixture
def offline(settings):
    settings.OPENAI_API_KEY = ""


def _failures(run) -> str:
    return "; ".join(
        f"{result.golden_task.title}: {result.failures}"
        for result in run.results.select_related("golden_task")
        if not result.passed
    )


@pytest.mark.parametrize("slug", SLUGS)
def test_every_template_hired_passes_its_golden_tasks_with_the_offline_engine(offline, slug):
    found = template(slug)
    user = UserFactory()
    result = template_hire_team(specs=found.employees, team=TeamFactory(), user=user)

    assert 2 <= sum(len(spec.golden_tasks) for spec in found.employees) <= 5
    for spec, employee in zip(found.employees, result.employees, strict=True):
        assert 1 <= len(spec.golden_tasks) <= 4
        stored = list(employee.golden_tasks.order_by("pk"))
        assert [(g.title, g.input, g.expectations) for g in stored] == [
            (case.title, case.input, case.expectations) for case in spec.golden_tasks
        ]
        assert all(golden.created_by == user for golden in stored)
        audited = AuditEntry.objects.filter(action="golden_task.created", actor_user=user)
        assert audited.filter(subject_id__in=[str(g.pk) for g in stored]).count() == len(stored)

        run = evaluation_run(employee=employee)

        assert (run.cases, run.passed) == (len(stored), len(stored)), _failures(run)


def test_a_golden_task_that_the_sop_breaks_fails_against_the_offline_engine(offline):
    """The cases are not vacuous: the same case fails once the step it relies on is gone."""
    spec = template("support-triage").employees[0]
    sop = [step for step in spec.sop if (step.get("tool") or {}).get("name") != "send_email"]
    employee = employee_hire(spec=replace(spec, sop=sop), team=TeamFactory())

    run = evaluation_run(employee=employee)

    failing = run.results.filter(passed=False).select_related("golden_task")
    assert {r.golden_task.title for r in failing} == {
        "Password reset question",
        "Refund request is proposed, never promised",
    }
    assert all("expected a call of send_email" in r.failures[0] for r in failing)


def _broken_copy(tmp_path, change) -> SpecError:
    data = json.loads(next(p for p in template_paths() if p.stem == "support-triage").read_text())
    change(data["employees"][0]["golden_tasks"])
    path = tmp_path / "broken-triage.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as caught:
        read_template(path)
    return caught.value


def test_a_broken_template_case_is_refused_naming_the_template_and_the_case(tmp_path):
    def break_it(cases):
        cases[1]["expectations"]["max_steps"] = 0
        cases[2]["expectations"]["calls"][0]["patterns"] = {"body": "(unclosed"}
        cases[0]["input"] = " "

    error = _broken_copy(tmp_path, break_it)

    prefix = "broken-triage.json \u203a Employee 1 (@tess-triage) \u203a Golden task"
    assert dict(error.errors) == {
        f"{prefix} 1 (Password reset question) \u203a Input": (
            "is required: the task the employee gets."
        ),
        f"{prefix} 2 (Legal threat goes to a person) \u203a Expectations": (
            "expectations.max_steps: must be at least 1"
        ),
        f"{prefix} 3 (Refund request is proposed, never promised) \u203a Expectations": (
            "expectations.calls[0].patterns.body: not a valid pattern "
            "(missing ), unterminated subpattern at position 0)"
        ),
    }
    assert "broken-triage.json" in str(error) and "Legal threat goes to a person" in str(error)


def test_a_case_expecting_a_tool_the_template_does_not_grant_is_refused(tmp_path):
    def break_it(cases):
        cases[0]["expectations"]["calls"] = [{"tool": "http_request"}]
        cases.append({"title": "Extra", "input": "Hi", "expectations": {}, "why": "?"})

    errors = dict(_broken_copy(tmp_path, break_it).errors)

    prefix = "broken-triage.json \u203a Employee 1 (@tess-triage) \u203a Golden task"
    assert errors[f"{prefix} 1 (Password reset question) \u203a Expectations"] == (
        "expects a call of http_request, which is not among the granted tools: grant it, or "
        "remove this golden task."
    )
    assert errors[f"{prefix} 4 (Extra)"] == "has no field 'why'; use title, input, expectations."
    assert errors[f"{prefix} 4 (Extra) \u203a Expectations"] == "Give at least one expectation."


def test_golden_tasks_are_created_in_the_hiring_transaction():
    """A case that fails when saved (checked around the spec) leaves no employee behind."""
    spec = template("sales-follow-up").employees[0]
    bad = GoldenSpec(title="Bad", input="Hi", expectations={"max_steps": "many"})
    with pytest.raises(SpecError) as caught:
        employee_hire(
            spec=replace(spec, golden_tasks=[*spec.golden_tasks, bad]), team=TeamFactory()
        )
    assert "max_steps" in str(caught.value)
    assert not Employee.objects.filter(handle=spec.handle).exists()
    assert not GoldenTask.objects.exists()


def test_a_spec_without_golden_tasks_still_hires():
    data = json.loads(next(p for p in template_paths() if p.stem == "sales-follow-up").read_text())
    member = data["employees"][0]
    del member["golden_tasks"]
    employee = employee_hire(spec=load_employee(member), team=TeamFactory())
    assert not employee.golden_tasks.exists()


@pytest.fixture
def manager(client):
    team = TeamFactory(name="Support")
    user = UserFactory(username="mia")
    MembershipFactory(team=team, user=user, role=TeamRole.MANAGER)
    client.force_login(user)
    return user


def test_the_hire_form_carries_the_templates_golden_tasks_and_can_drop_one(
    client, manager, offline
):
    html = client.post(
        reverse("employees:hire_start"), {"template": "support-triage"}, **HX
    ).content.decode()
    html = step(client, html, name="Tia", handle="tia-triage", go="review")
    assert "data-golden-tasks" in html and "Legal threat goes to a person" in html
    assert "Before hiring, fix" not in html

    html = step(client, html, op="remove:golden:1")  # the review step, without case 2
    assert "Legal threat goes to a person" not in html and "Password reset question" in html
    response = client.post(reverse("employees:hire_submit"), form_values(html), **HX)

    assert response["HX-Redirect"] == reverse("employees:profile", args=["tia-triage"])
    tia = Employee.objects.get(handle="tia-triage")
    assert list(tia.golden_tasks.values_list("title", flat=True)) == [
        "Password reset question",
        "Refund request is proposed, never promised",
    ]
    assert set(tia.golden_tasks.values_list("created_by", flat=True)) == {manager.pk}
    run = evaluation_run(employee=tia)
    assert run.passed == run.cases == 2, _failures(run)


def test_the_review_step_names_a_case_whose_tool_is_no_longer_granted(client, manager):
    html = client.post(
        reverse("employees:hire_start"), {"template": "it-operations-watcher"}, **HX
    ).content.decode()
    html = step(client, html, go="sop")
    # Drop the SOP's http_request step (the first), then its grant (the first tool).
    html = step(client, html, op="remove:sop:0")
    html = step(client, html, go="tools")
    html = step(client, html, op="remove:tool:0")
    html = step(client, html, go="review")

    assert "Before hiring, fix" in html
    assert "Golden task 1 (Morning health check) \u203a Expectations" in html
    assert "expects a call of http_request, which is not among the granted tools" in html


def test_team_files_carry_golden_tasks_and_renamed_delegations(offline):
    team = TeamFactory(name="People Ops")
    template_hire_team(specs=template("onboarding-team").employees, team=team, user=None)

    exported = team_file(team)
    cora = next(e for e in exported["employees"] if e["handle"] == "cora-onboarding")
    assert [case["title"] for case in cora["golden_tasks"]] == [
        "Onboard a new analyst",
        "The new hire's details reach the specialists",
    ]
    result = team_import(data=exported, team_name="People Ops Copy", rename_conflicts=True)

    copy = Employee.objects.get(handle=result.renamed["cora-onboarding"])
    first = copy.golden_tasks.order_by("pk").first()
    assert [call["arguments"]["to"] for call in first.expectations["calls"]] == [
        "hugo-hr-2",
        "ines-it-2",
        "finn-facilities-2",
    ]
    for employee in result.employees:
        run = evaluation_run(employee=employee)
        assert run.cases and run.passed == run.cases, _failures(run)


def test_the_demo_workforce_evaluates_clean_offline(offline):
    from employees.demo import load_demo_workforce

    created = load_demo_workforce()
    assert created["golden tasks"] >= 9
    assert load_demo_workforce()["golden tasks"] == 0  # once
    out, err = StringIO(), StringIO()
    call_command("evaluate", "ava-support", stdout=out, stderr=err)  # exits 1 on a failure
    assert "2/2 passed (100%)" in out.getvalue()
    for employee in Employee.objects.exclude(handle="ava-support"):
        run = evaluation_run(employee=employee)
        assert run.cases and run.passed == run.cases, (employee.handle, _failures(run))
