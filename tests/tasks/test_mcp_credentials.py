"""Per-employee MCP credentials: each employee reaches a server with its own secrets (so the
system at the other end sees who acted), stored encrypted, never shown, removed at offboarding."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from employees.models import EmployeeStatus, ToolGrant, ToolPolicy
from employees.services import employee_offboard, tool_grant_save
from tasks.loop import run_task
from tasks.mcp import client
from tasks.mcp.services import (
    mcp_credential_set,
    mcp_server_add,
    mcp_tools_refresh,
    server_spec,
)
from tasks.mcp.tools import forget_live_definitions
from tasks.models import McpCredential, Step, StepKind, TaskStatus
from tests.factories import EmployeeFactory, assigned_task
from tests.fakes.mcp_servers import http_server
from tests.fakes.openai_server import reply

SERVER_SCRIPT = Path(__file__).resolve().parent.parent / "fakes" / "mcp_servers.py"
ACTOR = Actor.system("test")
AVA_SECRET = "ava-own-token-7c1d"
TOKEN = "tok-crm-5e6f7a8b"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_sessions(settings):
    settings.MCP_TOOLS_CACHE_SECONDS = 0
    settings.MCP_TIMEOUT_SECONDS = 10
    yield
    client.close_sessions()
    forget_live_definitions()


def _employee(handle: str, *tools: str):
    employee = EmployeeFactory(handle=handle, status=EmployeeStatus.ACTIVE)
    for tool in tools:
        tool_grant_save(
            grant=ToolGrant(employee=employee, tool_name=tool, policy=ToolPolicy.AUTO),
            actor=ACTOR,
        )
    return employee


def _steps(task) -> list[dict]:
    return [s.payload for s in Step.objects.filter(task=task, kind=StepKind.TOOL_CALL)]


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_each_employee_calls_a_stdio_server_with_its_own_secret(model_server, tmp_path):
    sink = tmp_path / "refunds.jsonl"
    server = mcp_server_add(
        name="orders",
        actor=ACTOR,
        command=[sys.executable, str(SERVER_SCRIPT), "stdio"],
        env={"MCP_SINK": str(sink), "ORDERS_AGENT": "shared"},
    )
    mcp_tools_refresh(server=server, actor=ACTOR)
    ava = _employee("ava", "mcp:orders/refund_order")
    ben = _employee("ben", "mcp:orders/refund_order")
    mcp_credential_set(server=server, employee=ava, actor=ACTOR, env={"ORDERS_AGENT": AVA_SECRET})

    for employee, order in ((ava, "A-1"), (ben, "B-2")):
        model_server.enqueue(
            reply(tool_calls=[("mcp__orders__refund_order", {"order_id": order, "amount": 5.0})]),
            reply("Refunded."),
        )
        assert run_task(assigned_task(employee, f"Refund {order}.").pk) == TaskStatus.DONE

    refunds = {line["order_id"]: line for line in map(json.loads, sink.read_text().splitlines())}
    assert refunds["A-1"]["agent"] == AVA_SECRET  # her own value replaced the shared one
    assert refunds["B-2"]["agent"] == "shared"  # no credential of his own: the server's
    assert refunds["A-1"]["pid"] != refunds["B-2"]["pid"]  # one session per credential
    trail = json.dumps(list(AuditEntry.objects.values_list("data", flat=True)))
    steps = json.dumps(list(Step.objects.values_list("payload", flat=True)))
    assert AVA_SECRET not in trail and AVA_SECRET not in steps
    credential = McpCredential.objects.get(employee=ava)
    assert credential.secret_names == ["ORDERS_AGENT"]
    assert AVA_SECRET not in credential.secrets_encrypted


def test_over_http_only_the_employee_holding_the_right_token_gets_in(model_server):
    with http_server(token=TOKEN) as url:
        server = mcp_server_add(
            name="crm", actor=ACTOR, url=url, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        mcp_tools_refresh(server=server, actor=ACTOR)
        # From now on the shared header is a wrong one: only Ava's own token opens the door.
        server.secrets_encrypted = ""
        server.save(update_fields=["secrets_encrypted"])
        ava = _employee("ava", "mcp:crm/lookup_order")
        ben = _employee("ben", "mcp:crm/lookup_order")
        mcp_credential_set(
            server=server, employee=ava, actor=ACTOR, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        tasks = {}
        for employee in (ava, ben):
            model_server.enqueue(
                reply(tool_calls=[("mcp__crm__lookup_order", {"order_id": "A-1001"})]),
                reply("Looked it up."),
            )
            tasks[employee.handle] = assigned_task(employee, "Where is A-1001?")
            assert run_task(tasks[employee.handle].pk) == TaskStatus.DONE

    (ava_step,) = _steps(tasks["ava"])
    (ben_step,) = _steps(tasks["ben"])
    assert "Order A-1001" in ava_step["result"]["content"]
    assert "401" in ben_step["result"]["error"]
    assert TOKEN not in json.dumps(ben_step)


def test_credentials_are_refused_when_they_do_not_fit_the_server():
    server = mcp_server_add(
        name="orders", actor=ACTOR, command=[sys.executable, str(SERVER_SCRIPT), "stdio"]
    )
    ava = _employee("ava")
    with pytest.raises(ValidationError, match="Headers are for a URL"):
        mcp_credential_set(server=server, employee=ava, actor=ACTOR, headers={"X-Token": "abcd"})
    with pytest.raises(ValidationError, match="not a valid environment variable name"):
        mcp_credential_set(server=server, employee=ava, actor=ACTOR, env={"1BAD": "abcd"})
    with pytest.raises(ValidationError, match="Give the employee's own"):
        mcp_credential_set(server=server, employee=ava, actor=ACTOR)
    assert not McpCredential.objects.exists()


def test_offboarding_removes_the_employees_credentials_and_says_so():
    server = mcp_server_add(
        name="orders", actor=ACTOR, command=[sys.executable, str(SERVER_SCRIPT), "stdio"]
    )
    mcp_tools_refresh(server=server, actor=ACTOR)
    ava = _employee("ava", "mcp:orders/lookup_order")
    mcp_credential_set(server=server, employee=ava, actor=ACTOR, env={"ORDERS_AGENT": AVA_SECRET})

    employee_offboard(employee=ava, actor=ACTOR, reason="Role closed.")

    assert not McpCredential.objects.filter(employee=ava).exists()
    assert not ToolGrant.objects.filter(employee=ava).exists()
    removed = AuditEntry.objects.get(action="mcp.credential_removed")
    assert removed.data == {"server": "orders", "names": ["ORDERS_AGENT"]}


def test_the_credential_command_sets_checks_and_removes(settings):
    command = f"{sys.executable} {SERVER_SCRIPT} stdio"
    _run("mcp", "add", "orders", "--command", command)
    EmployeeFactory(handle="ava")

    output = _run("mcp", "credential", "orders", "ava", "--env", f"ORDERS_AGENT={AVA_SECRET}")
    assert "ava now reaches 'orders' with its own ORDERS_AGENT" in output
    assert AVA_SECRET not in output
    assert "answers" in _run("mcp", "check", "orders", "--as", "ava")
    assert "1 employee credentials" in _run("mcp", "list")
    assert "1 MCP credentials" in _run("rotate_secrets")

    assert "Removed ava's credential" in _run("mcp", "credential", "orders", "ava", "--remove")
    with pytest.raises(CommandError, match="has no credential of its own"):
        _run("mcp", "credential", "orders", "ava", "--remove")
    with pytest.raises(CommandError, match="no employee with the handle 'zed'"):
        _run("mcp", "credential", "orders", "zed", "--env", "A=b")
    with pytest.raises(CommandError, match="Headers are for a URL"):
        _run("mcp", "credential", "orders", "ava", "--header", "X-Token: abcd")


def test_the_server_page_lists_whose_credentials_it_holds_by_name_only(admin_client):
    server = mcp_server_add(
        name="orders", actor=ACTOR, command=[sys.executable, str(SERVER_SCRIPT), "stdio"]
    )
    mcp_credential_set(
        server=server, employee=_employee("ava"), actor=ACTOR, env={"ORDERS_AGENT": AVA_SECRET}
    )

    page = admin_client.get(f"/admin/tasks/mcpserver/{server.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "ORDERS_AGENT" in html and "ava" in html and AVA_SECRET not in html


def test_a_manager_removes_a_credential_from_the_back_office_and_it_is_audited(admin_client):
    server = mcp_server_add(
        name="orders", actor=ACTOR, command=[sys.executable, str(SERVER_SCRIPT), "stdio"]
    )
    credential = mcp_credential_set(
        server=server, employee=_employee("ava"), actor=ACTOR, env={"ORDERS_AGENT": AVA_SECRET}
    )
    listing = admin_client.get("/admin/tasks/mcpcredential/")
    assert listing.status_code == 200 and AVA_SECRET not in listing.content.decode()

    admin_client.post(
        "/admin/tasks/mcpcredential/",
        {"action": "remove", "_selected_action": [credential.pk]},
    )

    assert not McpCredential.objects.exists()
    assert AuditEntry.objects.filter(action="mcp.credential_removed").count() == 1


def test_an_employees_header_replaces_the_shared_one_whatever_its_case():
    server = mcp_server_add(
        name="crm",
        actor=ACTOR,
        url="http://127.0.0.1:9/mcp",
        headers={"Authorization": "Bearer shared-1234", "X-Tenant": "acme"},
    )
    credential = mcp_credential_set(
        server=server,
        employee=_employee("ava"),
        actor=ACTOR,
        headers={"authorization": "Bearer own-5678"},
    )

    headers = dict(server_spec(server, credential).headers)

    assert headers == {"authorization": "Bearer own-5678", "X-Tenant": "acme"}
