"""The role templates shipped with the product: every one loads and fits the tools it grants."""

from __future__ import annotations

import json

import pytest

from employees.hiring.catalogue import read_template, template_paths, templates
from employees.hiring.spec import SpecError, load_employee
from tasks.tools import get_tool, validate_scope

REQUIRED = {
    "support-triage",
    "it-operations-watcher",
    "onboarding-team",
    "sales-follow-up",
    "accounts-payable-clerk",
    "recruiting-scheduler",
}


def test_the_catalogue_has_the_promised_roles():
    assert {path.stem for path in template_paths()} >= REQUIRED


@pytest.mark.parametrize("path", template_paths(), ids=lambda path: path.stem)
def test_every_template_loads_and_validates(path):
    found = read_template(path)  # raises SpecError naming the file and the field
    assert found.title and found.summary
    for employee in found.employees:
        assert all(employee.brief.values()), f"{employee.handle} has an empty brief field"
        assert employee.sop and employee.grants and employee.documents
        for grant in employee.grants:
            validate_scope(grant.tool, grant.scope)
        granted = {grant.tool for grant in employee.grants}
        for step in employee.sop:
            if step.get("tool"):
                assert step["tool"]["name"] in granted
                known = set(get_tool(step["tool"]["name"]).parameters["properties"])
                assert set(step["tool"]["arguments"]) <= known


def test_the_onboarding_template_is_a_coordinator_delegating_to_three_specialists():
    team = next(t for t in templates() if t.slug == "onboarding-team")
    coordinator, *specialists = team.employees
    assert coordinator.is_manager and len(specialists) == 3
    delegated = [s["tool"]["arguments"]["to"] for s in coordinator.sop if s.get("tool")]
    assert delegated == [s.handle for s in specialists]
    assert all(s.reports_to == coordinator.handle for s in specialists)
    assert any(g.tool == "delegate" for g in coordinator.grants)


def _spec(**changes) -> dict:
    path = next(p for p in template_paths() if p.stem == "support-triage")
    spec = json.loads(path.read_text())["employees"][0]
    spec.update(changes)
    return spec


def _errors(spec) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        load_employee(spec)
    return dict(caught.value.errors)


def test_a_task_ceiling_above_the_day_ceiling_is_refused_in_words():
    errors = _errors(_spec(budgets={"max_cost_per_task": "6", "max_cost_per_day": "5"}))
    assert errors["Most a task may cost"] == (
        "$6 is more than the daily ceiling of $5: one task could never spend it. Lower it, "
        "or raise the daily ceiling."
    )


def test_each_problem_names_its_field():
    spec = _spec(
        handle="Bad Handle", tools=[{"tool": "send_email", "scope": {"allowed_domains": []}}]
    )
    spec["working_hours"] = {
        "timezone": "Mars/Olympus",
        "always_on": False,
        "windows": [{"days": ["mon"], "from": "18:00", "to": "09:00"}],
    }
    spec["duties"] = [{"name": "Sweep", "cron": "every day", "instructions": "x"}]
    errors = _errors(spec)
    assert "Handle" in errors and "lowercase" in errors["Handle"]
    assert "allowed_domains" in errors["Tool 1 (send_email) \u203a Scope"]
    assert "not a known time zone" in errors["Time zone"]
    assert "must end after it starts" in errors["Working hours"]
    assert "five fields" in errors["Duty 1 (Sweep) \u203a Schedule"]
    assert "not among the granted tools" in errors["SOP step 2"]


def test_duties_default_to_the_employees_time_zone():
    spec = load_employee(_spec())
    assert spec.timezone == "Europe/London"
    assert [duty.timezone for duty in spec.duties] == ["Europe/London"]
