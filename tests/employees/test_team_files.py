"""Teams as files: export a team, import it into a fresh team, get the same content back."""

from __future__ import annotations

import copy
import io
import json

import pytest
from django.core.management import CommandError, call_command

from employees.hiring.catalogue import template
from employees.hiring.selectors import team_file
from employees.hiring.services import ImportRefused, team_import, template_hire_team
from employees.hiring.spec import SpecError
from employees.memory.services import memory_remember
from employees.models import Employee, EmployeeStatus, KnowledgeDocument, MemoryKind, Team
from tests.factories import TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def onboarding(system_actor):
    """The onboarding team template hired into a team, with a team fact and a document."""
    team = TeamFactory(name="People Ops", description="Onboards people.")
    user = UserFactory(username="mia")
    template_hire_team(specs=template("onboarding-team").employees, team=team, user=user)
    memory_remember(
        kind=MemoryKind.FACT, team=team, text="Badges take one day.", actor=system_actor
    )
    return team


def _without_volatile(data: dict) -> dict:
    data = copy.deepcopy(data)
    data.pop("exported_at")
    data["team"].pop("name")
    return data


def test_export_then_import_into_a_fresh_team_gives_the_same_content(onboarding):
    exported = team_file(onboarding)
    assert {e["handle"] for e in exported["employees"]} == {
        "cora-onboarding",
        "hugo-hr",
        "ines-it",
        "finn-facilities",
    }
    text = json.dumps(exported)  # it is JSON all the way down

    result = team_import(data=json.loads(text), team_name="People Ops Copy", rename_conflicts=True)

    assert result.created_team and result.team.name == "People Ops Copy"
    assert result.renamed == {
        "cora-onboarding": "cora-onboarding-2",
        "finn-facilities": "finn-facilities-2",
        "hugo-hr": "hugo-hr-2",
        "ines-it": "ines-it-2",
    }
    again = json.dumps(_without_volatile(team_file(result.team)))
    for old, new in result.renamed.items():
        again = again.replace(new, old)
    assert json.loads(again) == _without_volatile(exported)
    coordinator = Employee.objects.get(handle="cora-onboarding-2")
    assert coordinator.status == EmployeeStatus.SHADOW
    assert coordinator.sop[1]["tool"]["arguments"]["to"] == "hugo-hr-2"  # delegation follows
    assert coordinator.tool_grants.get(tool_name="delegate").scope["allowed_handles"] == [
        "hugo-hr-2",
        "ines-it-2",
        "finn-facilities-2",
    ]
    assert Employee.objects.get(handle="ines-it-2").reports_to == coordinator
    assert KnowledgeDocument.objects.filter(employee=coordinator).count() == 1


def test_a_taken_handle_refuses_the_whole_import_and_names_it(onboarding):
    data = team_file(onboarding)
    with pytest.raises(
        ImportRefused, match="@cora-onboarding, @finn-facilities, @hugo-hr, @ines-it"
    ):
        team_import(data=data, team_name="Another")
    assert not Team.objects.filter(name="Another").exists()


def test_an_existing_team_name_is_never_reused_silently(onboarding):
    data = team_file(onboarding)
    with pytest.raises(ImportRefused, match="a team called 'People Ops' already exists"):
        team_import(data=data, rename_conflicts=True)


def test_an_unknown_tool_or_unregistered_mcp_server_refuses_the_import(onboarding):
    data = team_file(onboarding)
    data["employees"][0]["tools"].append({"tool": "launch_rockets", "policy": "auto", "scope": {}})
    data["employees"][1]["tools"].append(
        {"tool": "mcp:orders/lookup_order", "policy": "auto", "scope": {}}
    )
    with pytest.raises(SpecError) as caught:
        team_import(data=data, team_name="Copy", rename_conflicts=True)
    message = str(caught.value)
    assert "There is no tool called 'launch_rockets'" in message
    assert "MCP server 'orders', which is not registered here" in message
    assert "Employee 1 (@cora-onboarding)" in message
    assert not Team.objects.filter(name="Copy").exists()


def test_import_is_all_or_nothing(onboarding):
    data = team_file(onboarding)
    data["employees"][3]["duties"] = [
        {"name": "x", "cron": "0 9 * * *", "instructions": "y", "timezone": "UTC"}
    ]
    data["employees"][3]["handle"] = "zed-late"
    data["employees"][3]["name"] = "Z" * 101  # too long: the last employee fails
    before = Employee.objects.count()
    with pytest.raises(SpecError, match="Name: is 101 characters long"):
        team_import(data=data, team_name="Copy", rename_conflicts=True)
    assert Employee.objects.count() == before
    assert not Team.objects.filter(name="Copy").exists()


def test_commands_round_trip_through_a_file(onboarding, tmp_path):
    out = io.StringIO()
    call_command("export_team", "People Ops", stdout=out)
    path = tmp_path / "team.json"
    path.write_text(out.getvalue())
    assert "secret" not in out.getvalue().lower()

    with pytest.raises(CommandError, match="already taken here"):
        call_command("import_team", str(path), "--team-name", "Copy", stdout=io.StringIO())

    out = io.StringIO()
    call_command("import_team", str(path), "--team-name", "Copy", "--rename-conflicts", stdout=out)
    assert "@hugo-hr was taken: imported as @hugo-hr-2." in out.getvalue()
    assert "Created the team 'Copy': 4 employees" in out.getvalue()


def test_import_command_explains_a_broken_file(tmp_path):
    path = tmp_path / "team.json"
    path.write_text('{"format": "aiworkforce.team/1", "team": {"name": "X"}, "employees": [{}]}')
    with pytest.raises(CommandError) as caught:
        call_command("import_team", str(path), stdout=io.StringIO())
    assert "Employee 1 \u203a Name: is required." in str(caught.value)
    path.write_text("{nope")
    with pytest.raises(CommandError, match="is not valid JSON"):
        call_command("import_team", str(path))
    with pytest.raises(CommandError, match="There is no team called 'Nobody'"):
        call_command("export_team", "Nobody")


def test_the_demo_support_team_round_trips_with_its_mcp_grants_and_team_facts():
    from employees.demo import load_demo_workforce

    load_demo_workforce()
    support = Team.objects.get(name="Customer Support")
    exported = team_file(support)
    ava = next(e for e in exported["employees"] if e["handle"] == "ava-support")
    assert "pinned_definition" not in json.dumps(exported)
    assert any(f["text"].startswith("Password resets") for f in exported["facts"])

    result = team_import(data=exported, team_name="Support Copy", rename_conflicts=True)

    copy_of_ava = Employee.objects.get(handle=result.renamed["ava-support"])
    assert sorted(copy_of_ava.tool_grants.values_list("tool_name", flat=True)) == sorted(
        tool["tool"] for tool in ava["tools"]
    )
    mcp = [g for g in copy_of_ava.tool_grants.all() if g.tool_name.startswith("mcp:")]
    assert all(grant.pinned_definition for grant in mcp)  # re-pinned to the server's tool
    assert result.team.memories.filter(kind=MemoryKind.FACT).count() == len(exported["facts"])
