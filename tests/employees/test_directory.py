"""The employee directory: login required, scoped to the viewer's teams, filtered through htmx."""

from __future__ import annotations

import pytest
from django.urls import reverse

from employees.models import EmployeeStatus
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/employees/"


@pytest.fixture
def two_teams():
    support, ops = TeamFactory(name="Support"), TeamFactory(name="Ops")
    EmployeeFactory(name="Ava", handle="ava", team=support, role_title="Triage")
    EmployeeFactory(name="Sam", handle="sam", team=support, status=EmployeeStatus.PAUSED)
    EmployeeFactory(name="Rex", handle="rex", team=ops)
    return support, ops


def _names(response) -> list[str]:
    return [e.name for e in response.context["employees"]]


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_admin_pages_also_need_login(client):
    response = client.get("/admin/", follow=True)
    # The admin's own login page hands over to the allauth one, where MFA applies.
    assert response.redirect_chain[-1][0].startswith("/accounts/login/")
    assert response.status_code == 200


def test_login_page_is_open(client):
    assert client.get(reverse("account_login")).status_code == 200


def test_member_sees_only_their_teams_employees(client, two_teams):
    support, _ = two_teams
    member = MembershipFactory(team=support).user
    client.force_login(member)
    response = client.get(URL)
    assert sorted(_names(response)) == ["Ava", "Sam"]
    assert "Rex" not in response.text


def test_member_cannot_reach_another_team_by_filtering(client, two_teams):
    support, ops = two_teams
    client.force_login(MembershipFactory(team=support).user)
    response = client.get(URL, {"team": ops.pk})
    assert _names(response) == sorted(_names(client.get(URL)))  # invalid choice: filter ignored
    assert "Rex" not in response.text


def test_superuser_sees_everyone(client, two_teams):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    assert sorted(_names(client.get(URL))) == ["Ava", "Rex", "Sam"]


def test_user_without_team_gets_a_helpful_empty_state(client, two_teams):
    client.force_login(UserFactory())
    response = client.get(URL)
    assert "You are not a member of any team yet" in response.text


def test_filters_by_status_team_and_search(client, two_teams):
    _support, ops = two_teams
    client.force_login(UserFactory(is_superuser=True))
    assert _names(client.get(URL, {"status": "paused"})) == ["Sam"]
    assert _names(client.get(URL, {"team": ops.pk})) == ["Rex"]
    assert _names(client.get(URL, {"q": "triage"})) == ["Ava"]
    assert _names(client.get(URL, {"q": "@rex"})) == ["Rex"]
    assert "No employee matches these filters." in client.get(URL, {"q": "nobody"}).text


def test_htmx_request_gets_only_the_list_fragment(client, two_teams):
    client.force_login(UserFactory(is_superuser=True))
    response = client.get(URL, {"status": "active"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="employee-list"')
    assert "<html" not in response.text
    assert "Ava" in response.text and "Sam" not in response.text


def test_page_loads_htmx_from_our_static_files_and_sends_csrf(client, two_teams):
    client.force_login(UserFactory(is_superuser=True))
    html = client.get(URL).text
    assert '<script src="/static/django_htmx/htmx-2.min.js"' in html
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert "unpkg" not in html and "cdn" not in html.lower()


def test_directory_query_count_does_not_grow_with_employees(client, django_assert_max_num_queries):
    team = TeamFactory()
    for _ in range(30):
        EmployeeFactory(team=team)
    client.force_login(UserFactory(is_superuser=True))
    # 7: session, user, teams, employees, inbox badge, whether the person may hire, and one spare
    with django_assert_max_num_queries(7):
        client.get(URL)


def test_only_a_team_manager_is_offered_hiring(client, two_teams):
    support, _ = two_teams
    client.force_login(MembershipFactory(team=support, role="viewer").user)
    assert "Hire an employee" not in client.get(URL).text
    client.force_login(MembershipFactory(team=support, role="manager").user)
    assert "Hire an employee" in client.get(URL).text
