"""Fixtures for the agent loop: a scripted OpenAI-compatible server and employees with grants."""

from __future__ import annotations

import pytest

from employees.models import EmployeeStatus, ToolPolicy
from tests.conftest import EmployeeFactory, ToolGrantFactory
from tests.fakes.openai_server import FakeOpenAIServer


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
