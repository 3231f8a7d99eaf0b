"""GET /office/: the page, its #floor fragment for htmx polling, who sees what, what it costs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from aiworkforce.audit import Actor
from employees.models import EmployeeStatus
from employees.services import employee_pause
from tasks.claims import task_claim
from tests.factories import (
    EmployeeFactory,
    MembershipFactory,
    TeamFactory,
    UserFactory,
    assigned_task,
)

pytestmark = pytest.mark.django_db
URL = "/office/"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def viewer(client):
    user = UserFactory(username="viewer")
    client.force_login(user)
    return user


@pytest.fixture
def floor(viewer):
    """The viewer's team with a working and an idle employee; another team it cannot see."""
    ours = TeamFactory(name="Support")
    MembershipFactory(team=ours, user=viewer, role="viewer")
    busy = EmployeeFactory(team=ours, name="Ava", handle="ava")
    task = assigned_task(busy, "Refund order 48213")
    task_claim(task_id=task.pk)
    EmployeeFactory(team=ours, name="Nia", handle="nia", status=EmployeeStatus.SHADOW)
    theirs = TeamFactory(name="Finance")
    EmployeeFactory(team=theirs, name="Secret Sam", handle="secret-sam")
    return {"task": task, "busy": busy}


def test_the_url_is_named_and_needs_a_login(client):
    assert reverse("office:floor") == URL
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_page_shows_desks_grouped_by_team_with_links(client, floor):
    response = client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Office</h1>" in html and "css/office.css" in html and "js/office.js" in html
    assert 'data-team="Support"' in html and "Finance" not in html and "Secret Sam" not in html
    assert f"Working on #{floor['task'].pk}" in html and "starting" in html
    assert 'href="/employees/ava/"' in html and f'href="/tasks/{floor["task"].pk}/"' in html
    assert "Shadow" in html  # Nia's badge
    # Screen readers: the desks are not a live region; the polite summary is.
    assert 'id="floor" aria-live="off"' in html
    assert 'aria-live="polite"' in html and "1 working, 1 idle" in html
    # Polls only while the tab is visible, and at once when it becomes visible again.
    assert "every 3s [document.visibilityState === 'visible']" in html
    assert "visibilitychange[document.visibilityState === 'visible'] from:document" in html


def test_the_fragment_is_the_floor_alone(client, floor):
    response = client.get(URL, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and "<h1>" not in html and 'id="floor"' not in html
    assert html.lstrip().startswith('<div class="floor" data-summary="1 working, 1 idle">')
    assert 'data-handle="ava"' in html and 'data-state="working"' in html
    assert "secret-sam" not in html
    assert "HX-Request" in response["Vary"]


def test_a_person_without_a_team_is_told_why_the_floor_is_empty(client, viewer):
    html = client.get(URL).content.decode()
    assert "You are not a member of any team yet" in html


def test_the_floor_only_answers_get(client, floor):
    assert client.post(URL, headers=HTMX).status_code == 405


def _fragment_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(URL, headers=HTMX)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def test_a_refresh_costs_the_same_for_5_or_50_employees(client, viewer, busy_team):
    """The selector is one statement (test_selectors); the whole request adds only the session
    and user lookups of the authentication middleware: 3 statements, however many desks."""
    team = TeamFactory()
    MembershipFactory(team=team, user=viewer)
    busy_team(team, 5)
    few = _fragment_queries(client)
    busy_team(team, 45)
    many = _fragment_queries(client)
    assert len(few) == len(many) == 3, many
    assert "django_session" in many[0] and "auth_user" in many[1] and "LATERAL" in many[2]
    assert client.get(URL, headers=HTMX).content.decode().count('class="desk ') == 50


def test_a_changed_desk_is_rendered_anew_on_the_next_refresh(client, floor):
    first = client.get(URL, headers=HTMX).content.decode()
    assert client.get(URL, headers=HTMX).content.decode() == first  # unchanged: the same HTML
    employee_pause(
        employee=floor["busy"], actor=Actor.system("tests"), reason="Spend spike: $4 in 10 min."
    )
    html = client.get(URL, headers=HTMX).content.decode()
    assert html != first and "Spend spike: $4 in 10 min." in html
    assert 'data-handle="ava" data-state="paused"' in html
