"""The operator's MCP commands (mcp add/tools/check/list, grant, revoke) against real servers."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from aiworkforce.models import AuditEntry
from employees.models import ToolGrant, ToolPolicy
from tasks.mcp import client
from tasks.models import McpServer, McpTool
from tests.factories import EmployeeFactory
from tests.fakes.mcp_servers import http_server

SERVER_SCRIPT = Path(__file__).resolve().parent.parent / "fakes" / "mcp_servers.py"
TOKEN = "tok-9f8e7d6c5b4a"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_sessions():
    yield
    client.close_sessions()


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def _add_stdio(name: str = "orders") -> str:
    command = f"{sys.executable} {SERVER_SCRIPT} stdio"
    return _run("mcp", "add", name, "--command", command, "--env", "ORDERS_TOKEN=s3cret-env")


def test_add_lists_the_tools_and_stores_secrets_only_encrypted():
    output = _add_stdio()

    assert "Added MCP server 'orders' (stdio:" in output
    assert "mcp:orders/lookup_order" in output and "mcp:orders/refund_order" in output
    server = McpServer.objects.get(name="orders")
    assert server.secret_names == ["ORDERS_TOKEN"]
    assert "s3cret-env" not in server.secrets_encrypted and "s3cret-env" not in output
    entry = AuditEntry.objects.get(action="mcp.server_added")
    assert "s3cret-env" not in json.dumps(entry.data)
    assert McpTool.objects.filter(server=server).count() >= 5


def test_tools_prints_descriptions_schemas_and_annotations_as_json():
    _add_stdio()

    tools = {tool["tool"]: tool for tool in json.loads(_run("mcp", "tools", "orders", "--json"))}

    lookup = tools["mcp:orders/lookup_order"]
    assert lookup["annotations"]["readOnlyHint"] is True
    assert lookup["input_schema"]["required"] == ["order_id"]
    assert tools["mcp:orders/refund_order"]["annotations"].get("readOnlyHint") is not True


def test_check_reports_latency_or_a_clear_error():
    _add_stdio()
    assert "answers," in _run("mcp", "check", "orders") and " ms " in _run("mcp", "check", "orders")
    with pytest.raises(CommandError, match="no MCP server called 'nope'"):
        _run("mcp", "check", "nope")


def test_an_http_server_with_a_wrong_token_is_a_clear_error_that_shows_no_token():
    with http_server(token=TOKEN) as url:
        output = _run("mcp", "add", "crm", "--url", url, "--header", "Authorization: Bearer wrong")
        assert "does not answer yet" in output and "401" in output and "wrong" not in output
        with pytest.raises(CommandError, match="401") as refused:
            _run("mcp", "check", "crm")
        assert "Bearer" not in str(refused.value)

        _run("mcp", "add", "crm2", "--url", url, "--header", f"Authorization: Bearer {TOKEN}")
        assert "answers, " in _run("mcp", "check", "crm2")
    assert TOKEN not in json.dumps(list(AuditEntry.objects.values_list("data", flat=True)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Name", "--url", "http://x.example/mcp"], "not a usable server name"),
        (["web", "--url", "ftp://x.example/"], "not an http:// or https:// URL"),
        (["web", "--url", "http://x.example/", "--header", "NoColon"], "must look like NAME:VALUE"),
        (["cli", "--command", "tool 'unclosed"], "cannot be read"),
        (["cli", "--command", "tool", "--env", "1BAD=x"], "not a valid environment variable"),
        (["a__b", "--url", "http://x.example/"], "not two _ in a row"),
        (["web", "--url", "http://user:pw@x.example/"], "not in the URL"),
        (
            ["web", "--url", "http://x.example/", "--header", "Authorization: Bearer t\nX: 1"],
            "holds a line break",
        ),
    ],
)
def test_bad_input_to_add_is_refused_with_a_reason_and_nothing_is_stored(args, message):
    with pytest.raises(CommandError, match=message):
        _run("mcp", "add", *args)
    assert not McpServer.objects.exists()


def test_grant_follows_the_tools_hints_and_revoke_takes_it_back():
    _add_stdio()
    EmployeeFactory(handle="ava")

    assert "automatic" in _run("grant", "ava", "mcp:orders/lookup_order")
    assert "needs approval" in _run("grant", "@ava", "mcp:orders/refund_order")
    assert "never" in _run("grant", "ava", "mcp:orders/crash", "--policy", "never")
    lookup = ToolGrant.objects.get(tool_name="mcp:orders/lookup_order")
    assert lookup.policy == ToolPolicy.AUTO and lookup.pinned_definition["name"] == "lookup_order"
    assert "Granted send_email" in _run(
        "grant", "ava", "send_email", "--scope", '{"allowed_domains": ["example.com"]}'
    )

    assert "Revoked" in _run("revoke", "ava", "mcp:orders/crash")
    assert not ToolGrant.objects.filter(tool_name="mcp:orders/crash").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "send_email"], "no employee with the handle 'nobody'"),
        (["ava", "mcp:orders/missing"], "offers no tool called 'missing'"),
        (["ava", "mcp:ghost/tool"], "no MCP server called 'ghost'"),
        (["ava", "mcp:orders"], "not an MCP tool name"),
        (["ava", "no_such_tool"], "no tool called 'no_such_tool'"),
        (["ava", "send_email", "--scope", "{bad"], "not valid JSON"),
    ],
)
def test_bad_grants_are_refused_with_a_reason(args, message):
    _add_stdio()
    EmployeeFactory(handle="ava")
    with pytest.raises(CommandError, match=message):
        _run("grant", *args)
    assert not ToolGrant.objects.filter(employee__handle="ava").exists()


def test_rotate_secrets_reencrypts_with_the_new_key_so_the_old_one_can_go(settings):
    from cryptography.fernet import Fernet

    from tasks.mcp.services import server_spec

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEY = old
    _add_stdio()
    settings.FIELD_ENCRYPTION_KEY = f"{new},{old}"

    assert "1 MCP servers" in _run("rotate_secrets")

    settings.FIELD_ENCRYPTION_KEY = new
    spec = server_spec(McpServer.objects.get(name="orders"))
    assert dict(spec.env) == {"ORDERS_TOKEN": "s3cret-env"}


def test_rotate_secrets_changes_nothing_when_a_secret_cannot_be_opened(settings):
    from cryptography.fernet import Fernet

    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()
    _add_stdio()
    stored = McpServer.objects.get(name="orders").secrets_encrypted
    settings.FIELD_ENCRYPTION_KEY = Fernet.generate_key().decode()  # the old key was dropped

    with pytest.raises(CommandError, match="Nothing was changed"):
        _run("rotate_secrets")
    assert McpServer.objects.get(name="orders").secrets_encrypted == stored
