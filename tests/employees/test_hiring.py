"""The hire page: from a template or blank, step by step, to an employee in shadow mode."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from employees.models import Employee, EmployeeStatus, KnowledgeDocument, TeamRole
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


class _Form(HTMLParser):
    """The values a browser would post for the wizard form (checked boxes, selected options)."""

    def __init__(self):
        super().__init__()
        self.values: list[tuple[str, str]] = []
        self._select = self._textarea = None
        self._option = None
        self._chosen: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.values.append((name, a.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea = [name, ""]
        elif tag == "select" and name:
            self._select = name
        elif (
            tag == "option"
            and self._select
            and (self._select not in self._chosen or "selected" in a)
        ):
            self._chosen[self._select] = a.get("value", "")

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea is not None:
            self.values.append(tuple(self._textarea))
            self._textarea = None
        elif tag == "select" and self._select:
            self.values.append((self._select, self._chosen.get(self._select, "")))
            self._select = None


def form_values(html: str, **changes) -> dict:
    parser = _Form()
    parser.feed(html)
    data: dict[str, list[str]] = {}
    for name, value in parser.values:
        data.setdefault(name, []).append(value)
    for name, value in changes.items():
        data[name] = value if isinstance(value, list) else [value]
    return data


def step(client, html: str, **changes) -> str:
    response = client.post(reverse("employees:hire_step_hx"), form_values(html, **changes), **HX)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def manager(client):
    team = TeamFactory(name="Support")
    user = UserFactory(username="mia")
    MembershipFactory(team=team, user=user, role=TeamRole.MANAGER)
    client.force_login(user)
    return user


def _start(client, template="support-triage") -> str:
    response = client.post(reverse("employees:hire_start"), {"template": template}, **HX)
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_lists_the_catalogue_and_the_teams_files_panel(client, manager):
    page = client.get(reverse("employees:hire")).content.decode()
    for title in (
        "Support triage",
        "IT operations watcher",
        "Accounts-payable clerk",
        "Recruiting scheduler",
        "Sales follow-up",
        "Onboarding coordinator",
    ):
        assert title in page
    assert "Teams as files" in page and "Download team file" in page


def test_hiring_from_a_template_walks_every_step_and_starts_in_shadow(client, manager):
    html = _start(client)
    assert 'data-step="brief"' in html and 'value="tess-triage"' in html
    html = step(client, html, name="Tia", handle="tia-triage", go="tools")
    assert 'data-step="tools"' in html and "Allowed domains" in html  # scope as fields
    assert "example.com" in html
    html = step(client, html, go="sop")
    assert 'data-step="sop"' in html and "Arguments for send_email" in html
    for expected in ("hours", "budgets", "duties", "knowledge", "review"):
        html = step(client, html, go=expected)
        assert f'data-step="{expected}"' in html, html[:3000]
    assert "Before hiring, fix" not in html
    response = client.post(reverse("employees:hire_submit"), form_values(html), **HX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("employees:profile", args=["tia-triage"])
    tia = Employee.objects.get(handle="tia-triage")
    assert tia.status == EmployeeStatus.SHADOW and tia.manager == manager
    assert tia.timezone == "Europe/London" and not tia.always_on
    assert tia.working_windows.count() == 5
    assert set(tia.tool_grants.values_list("tool_name", flat=True)) >= {"send_email", "recall"}
    assert tia.tool_grants.get(tool_name="send_email").scope == {"allowed_domains": ["example.com"]}
    assert tia.duties.get().timezone == "Europe/London"
    assert KnowledgeDocument.objects.filter(employee=tia, title="support-playbook.md").exists()
    assert len(tia.sop) == 5


def test_back_keeps_what_was_typed_and_next_refuses_a_broken_step(client, manager):
    html = _start(client)
    html = step(client, html, name="Tia", handle="tia-triage", go="tools")
    html = step(client, html, go="brief")
    assert 'value="Tia"' in html and 'value="tia-triage"' in html
    html = step(client, html, name="", go="tools")
    assert 'data-step="brief"' in html and "<strong>Name</strong>: is required." in html


def test_the_budget_step_refuses_a_task_ceiling_above_the_day_ceiling(client, manager):
    html = _start(client)
    for name in ("tools", "sop", "hours", "budgets"):
        html = step(client, html, go=name)
    html = step(client, html, max_cost_per_task="9", max_cost_per_day="5", go="duties")
    assert 'data-step="budgets"' in html
    assert "$9 is more than the daily ceiling of $5" in html


def test_sop_rows_are_added_moved_and_removed(client, manager):
    html = _start(client)
    html = step(client, html, go="tools")
    html = step(client, html, go="sop")
    html = step(client, html, op="add:sop")
    html = step(client, html, **{"sop-5-text": "Say goodbye", "op": "up:sop:5"})
    draft = json.loads(form_values(html)["draft"][0])
    assert [s["text"] for s in draft["sop"]][4:] == ["Say goodbye", draft["sop"][5]["text"]]
    html = step(client, html, op="remove:sop:4")
    draft = json.loads(form_values(html)["draft"][0])
    assert "Say goodbye" not in [s["text"] for s in draft["sop"]] and len(draft["sop"]) == 5


def test_a_step_may_only_use_a_granted_tool(client, manager):
    html = _start(client)
    html = step(client, html, go="tools")
    html = step(client, html, op="remove:tool:0")  # send_email goes
    html = step(client, html, go="sop")
    html = step(client, html, go="hours")
    assert 'data-step="sop"' in html
    assert "uses send_email, which is not among the granted tools" in html


def test_the_cron_helper_shows_the_next_five_runs_in_the_time_zone(client, manager):
    url = reverse("employees:hire_cron_hx")
    response = client.get(
        url, {"row": 0, "duty-0-cron": "0 9 * * 1-5", "employee_tz": "Europe/Berlin"}, **HX
    )
    html = response.content.decode()
    assert "Next five runs (Europe/Berlin)" in html and html.count("<li>") == 5 and "09:00" in html
    html = client.get(url, {"row": 0, "duty-0-cron": "0 25 * * *"}, **HX).content.decode()
    assert "is not a valid cron expression" in html


def test_a_taken_handle_is_refused_on_the_brief_step(client, manager):
    EmployeeFactory(handle="tess-triage")
    html = _start(client)
    html = step(client, html, go="tools")
    assert "another employee already has the handle &#x27;tess-triage&#x27;" in html


def test_people_who_manage_no_team_are_told_why_they_cannot_hire(client):
    user = UserFactory(username="vic")
    MembershipFactory(team=TeamFactory(), user=user, role=TeamRole.APPROVER)
    client.force_login(user)
    response = client.get(reverse("employees:hire"))
    assert response.status_code == 403
    assert "Only a team's managers can hire into it" in response.content.decode()
    assert client.post(reverse("employees:hire_start"), {}).status_code == 403


def test_a_forged_team_is_refused(client, manager):
    other = TeamFactory(name="Elsewhere")
    html = _start(client)
    html = step(client, html, team=str(other.pk), go="tools")
    assert "<strong>Team</strong>: pick one of the teams you manage." in html
    response = client.get(reverse("employees:team_export"), {"team": other.pk})
    assert response.status_code == 404


def test_a_team_template_hires_all_four_into_the_team(client, manager):
    team = manager.teams.get()
    response = client.post(
        reverse("employees:hire_team"), {"template": "onboarding-team", "team": team.pk}, **HX
    )
    assert response["HX-Redirect"] == reverse("employees:directory")
    assert set(team.employees.values_list("handle", "status")) == {
        ("cora-onboarding", "shadow"),
        ("hugo-hr", "shadow"),
        ("ines-it", "shadow"),
        ("finn-facilities", "shadow"),
    }
    assert Employee.objects.get(handle="ines-it").reports_to.handle == "cora-onboarding"


def test_export_and_import_buttons(client, manager):
    team = manager.teams.get()
    client.post(
        reverse("employees:hire_team"), {"template": "onboarding-team", "team": team.pk}, **HX
    )
    exported = client.get(reverse("employees:team_export"), {"team": team.pk})
    assert exported["Content-Disposition"] == 'attachment; filename="team-support.json"'
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("team.json", exported.content, content_type="application/json")
    html = client.post(
        reverse("employees:team_import"), {"file": upload, "into": team.pk}, **HX
    ).content.decode()
    assert "Nothing was imported" in html and "@cora-onboarding" in html
    upload.seek(0)
    html = client.post(
        reverse("employees:team_import"), {"file": upload, "into": team.pk, "rename": "1"}, **HX
    ).content.decode()
    assert "Imported 4 employees into Support" in html and "imported as @hugo-hr-2" in html
    assert team.employees.count() == 8


def test_review_warns_when_an_sop_delegates_to_someone_not_hired_yet(client, manager):
    response = client.post(
        reverse("employees:hire_start"), {"template": "onboarding-team", "member": "0"}, **HX
    )
    html = response.content.decode()
    for name in ("tools", "sop", "hours", "budgets", "duties", "knowledge", "review"):
        html = step(client, html, go=name)
    assert "SOP step 2 delegates to @hugo-hr, who is not hired yet" in html
