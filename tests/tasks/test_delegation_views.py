"""The task tree on task pages and its live fragment: scoped to the viewer's teams."""

from __future__ import annotations

import pytest

from tasks.models import Task, TaskSource
from tasks.services import task_create
from tests.factories import EmployeeFactory, MembershipFactory, TeamFactory

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


def test_a_person_in_one_team_sees_no_handle_name_or_title_of_another_teams_tasks(client, tree):
    ops_member = MembershipFactory(team=tree["ops"]).user
    client.force_login(ops_member)
    for url in (f"/tasks/{tree['child'].pk}/", f"/tasks/{tree['child'].pk}/tree/"):
        page = client.get(url, headers={"HX-Request": "true"} if "tree" in url else {}).text
        node = page.split(f'data-task="{tree["sibling"].pk}"', 1)[1].split("</li>", 1)[0]
        assert "another team&#x27;s employee" in node
        assert "@clerk" not in page and "Secret payroll" not in page
        assert tree["sibling"].employee.name not in page
        assert f'href="/tasks/{tree["sibling"].pk}/"' not in page
        assert "@lead" in page and "@one" in page  # their own team's are named

    # Someone in Finance only, looking at the clerk's task that Ops' lead delegated.
    finance = tree["sibling"].employee.team
    asked, _ = task_create(
        employee=tree["sibling"].employee,
        title="Pay Kim",
        input="z",
        parent=tree["root"],
        source=TaskSource.DELEGATION,
        requested_by_employee=tree["root"].employee,
        dispatch=False,
    )
    client.force_login(MembershipFactory(team=finance).user)
    page = client.get(f"/tasks/{asked.pk}/").text
    assert "@clerk" in page and "Secret payroll" in page  # Finance's own tasks
    for hidden in ("@lead", "@one", "Onboard Kim", "Laptop for Kim"):
        assert hidden not in page, hidden
    assert tree["root"].employee.name not in page
    assert "Delegated by another team&#x27;s employee" in page
