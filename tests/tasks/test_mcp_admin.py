"""MCP servers in the back office: added through the service, secrets never shown again."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from django.urls import reverse

from employees.models import ToolGrant
from tasks.mcp import client
from tasks.models import McpServer
from tests.factories import EmployeeFactory

SERVER_SCRIPT = Path(__file__).resolve().parent.parent / "fakes" / "mcp_servers.py"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_sessions():
    yield
    client.close_sessions()


def _add(admin_client, **fields):
    data = {"name": "", "url": "", "command_line": "", "headers": "", "env": "", **fields}
    return admin_client.post(reverse("admin:tasks_mcpserver_add"), data, follow=True)


def test_a_manager_adds_a_stdio_server_and_its_tools_are_listed(admin_client):
    response = _add(
        admin_client,
        name="orders",
        command_line=f"{sys.executable} {SERVER_SCRIPT} stdio",
        env="ORDERS_TOKEN=s3cret-value",
    )

    assert response.status_code == 200
    assert "orders offers 5 tools." in [str(message) for message in response.context["messages"]]
    server = McpServer.objects.get(name="orders")
    assert server.tools.filter(name="lookup_order").exists()
    page = admin_client.get(reverse("admin:tasks_mcpserver_change", args=[server.pk]))
    assert "ORDERS_TOKEN" in page.content.decode() and "s3cret-value" not in page.content.decode()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name", "url": "http://x.example/"}, "not a usable server name"),
        ({"name": "both", "url": "http://x.example/", "command_line": "x"}, "either a URL"),
        (
            {"name": "web", "url": "http://x.example/", "headers": "NoColon"},
            "Line 1 must look like",
        ),
        ({"name": "cli", "command_line": "tool 'open"}, "cannot be read"),
    ],
)
def test_bad_input_is_shown_on_the_form_and_nothing_is_stored(admin_client, fields, message):
    response = _add(admin_client, **fields)

    assert response.status_code == 200 and message in response.content.decode()
    assert not McpServer.objects.exists()


def test_a_suspended_grant_shows_what_changed_and_is_reapproved_by_the_action(admin_client):
    _add(admin_client, name="orders", command_line=f"{sys.executable} {SERVER_SCRIPT} stdio")
    employee = EmployeeFactory(handle="ava")
    from aiworkforce.audit import Actor
    from employees.services import tool_grant_save

    grant = tool_grant_save(
        grant=ToolGrant(employee=employee, tool_name="mcp:orders/lookup_order"),
        actor=Actor.system("test"),
    )
    ToolGrant.objects.filter(pk=grant.pk).update(
        pinned_definition={**grant.pinned_definition, "description": "An older description."},
        suspended_at="2026-12-01T00:00:00Z",
        suspended_reason="Suspended: its server now describes it differently.",
    )

    page = admin_client.get(reverse("admin:employees_toolgrant_change", args=[grant.pk]))
    assert "An older description." in page.content.decode()
    admin_client.post(
        reverse("admin:employees_toolgrant_changelist"),
        {"action": "reapprove", "_selected_action": [grant.pk]},
    )

    grant.refresh_from_db()
    assert (
        grant.suspended_at is None
        and grant.pinned_definition["description"] != "An older description."
    )
