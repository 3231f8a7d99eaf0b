"""The task tree on task pages and its live fragment: scoped to the viewer's teams."""

from __future__ import annotations

import pytest

from tasks.models import Task
from tasks.services import task_create
from tests.conftest import EmployeeFactory, MembershipFactory, TeamFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    ops, finance = TeamFactory(name="Ops"), TeamFactory(name="Finance")
    lead = EmployeeFactory(handle="lead", team=ops)
    one = EmployeeFactory(handle="one", team=ops)
    clerk = EmployeeFactory(handle="clerk", team=finance)
    root, _ = task_create(employee=lead, title="Onboard Kim", input="x", dispatch=False)
    child, _ = task_create(
        employee=one, title="Laptop for Kim", input="y", parent=root, dispatch=False
    )
    sibling, _ = task_create(
        employee=clerk, title="Secret payroll", input="z", parent=root, dispatch=False
    )
    return {"ops": ops, "root": root, "child": child, "sibling": sibling}


def test_the_task_page_shows_parent_siblings_and_children_with_status(client, tree):
    client.force_login(MembershipFactory(team=tree["ops"]).user)
    page = client.get(f"/tasks/{tree['child'].pk}/").text
    assert "<h2>Linked requests</h2>" in page
    assert f'href="/tasks/{tree["root"].pk}/"' in page and "Onboard Kim" in page
    assert f'data-task="{tree["child"].pk}" data-relation="this"' in page
    # Another team's task is shown by status only: no title, no link.
    assert f'data-task="{tree["sibling"].pk}" data-relation="sibling"' in page
    assert "Secret payroll" not in page and f'href="/tasks/{tree["sibling"].pk}/"' not in page
    assert f'hx-get="/tasks/{tree["child"].pk}/tree/"' in page  # live while any is unfinished


def test_the_tree_fragment_refreshes_statuses_and_stops_polling_when_all_finished(client, tree):
    client.force_login(MembershipFactory(team=tree["ops"]).user)
    url = f"/tasks/{tree['root'].pk}/tree/"
    fragment = client.get(url, headers={"HX-Request": "true"}).text
    assert fragment.lstrip().startswith('<section id="task-tree"')
    assert 'data-tree-status="queued"' in fragment
    Task.objects.update(status="done")
    fragment = client.get(url, headers={"HX-Request": "true"}).text
    assert 'data-tree-status="queued"' not in fragment and "hx-trigger" not in fragment


def test_a_lone_task_has_no_tree_and_the_fragment_is_scoped(client, tree):
    lone, _ = task_create(employee=tree["root"].employee, title="Alone", input="x", dispatch=False)
    member = MembershipFactory(team=tree["ops"]).user
    client.force_login(member)
    assert "<h2>Linked requests</h2>" not in client.get(f"/tasks/{lone.pk}/").text
    assert client.get(f"/tasks/{tree['sibling'].pk}/tree/").status_code == 404
