"""Shared fixtures (factories are in tests/factories.py). Tests run on the real PostgreSQL + pgvector (embedded or DATABASE_URL)."""

from __future__ import annotations

import os

import pytest

from aiworkforce.audit import Actor
from employees.models import (
    EmployeeStatus,
    ToolPolicy,
)
from tasks.mcp.tools import forget_live_definitions
from tests.factories import EmployeeFactory, ToolGrantFactory, UserFactory
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """AIW_TEST_DB_SUFFIX=name gives this run its own test database, so two runs (two
    developers' checkouts sharing one server, or parallel reviewers) never drop each other's."""
    suffix = os.environ.get("AIW_TEST_DB_SUFFIX", "").strip()
    if suffix:
        from django.conf import settings

        for db_settings in settings.DATABASES.values():
            test = db_settings.setdefault("TEST", {})
            test["NAME"] = f"{test.get('NAME') or 'test_' + db_settings['NAME']}_{suffix}"


@pytest.fixture(autouse=True)
def _forget_mcp_tools():
    """What a process read of MCP servers and tools (kept up to MCP_TOOLS_CACHE_SECONDS) is
    forgotten after each test: the next test's server of the same name is another one."""
    yield
    forget_live_definitions()


@pytest.fixture
def system_actor() -> Actor:
    return Actor.system("tests")


@pytest.fixture
def superuser(db):
    return UserFactory(username="boss", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


# --- the agent loop: a scripted model endpoint and an employee with grants ----------------------


@pytest.fixture(scope="session")
def _model_server():
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def model_server(_model_server, settings):
    """The model endpoint the loop talks to (real HTTP, the real openai SDK)."""
    _model_server.reset()
    settings.OPENAI_API_KEY = "sk-test-not-a-real-key"
    settings.OPENAI_BASE_URL = _model_server.base_url
    settings.DEFAULT_MODEL = "gpt-4o-mini"
    settings.LLM_MAX_RETRIES = 2
    return _model_server


@pytest.fixture
def clerk(db):
    """An active employee allowed to email example.com (with approval) and call one API."""
    employee = EmployeeFactory(handle="clerk", name="Clerk", status=EmployeeStatus.ACTIVE)
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.NEEDS_APPROVAL,
    )
    ToolGrantFactory(
        employee=employee,
        tool_name="http_request",
        scope={"allowed_hosts": ["127.0.0.1"], "allowed_methods": ["GET"]},
        policy=ToolPolicy.AUTO,
    )
    ToolGrantFactory(employee=employee, tool_name="create_task", scope={}, policy=ToolPolicy.AUTO)
    ToolGrantFactory(
        employee=employee, tool_name="escalate_to_human", scope={}, policy=ToolPolicy.AUTO
    )
    return employee
