"""Input PostgreSQL cannot store, fuzzed through every form a person uses.

NUL characters, lone UTF-16 surrogates, invalid UTF-8 and huge fields: refused with a message a
person can act on or stored intact, never a 500, and never half-written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from aiworkforce.storable import storable_problem, validate_storable
from approvals.models import ApprovalRequest, Escalation
from approvals.services import escalation_create
from employees.memory.services import memory_remember
from employees.models import Employee, KnowledgeDocument, MemoryEntry, MemoryKind, ToolGrant
from tasks.models import Task, TaskStatus
from tests.approvals.conftest import make_approval
from tests.employees.test_admin import _change_form_data
from tests.factories import (
    PASSWORD,
    EmployeeFactory,
    MembershipFactory,
    TeamFactory,
    ToolGrantFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}

# Values as they travel in a form body or a query string (percent-encoded bytes).
FORM_VALUES = {
    "nul": "before%00after",
    # A UTF-16 surrogate half encoded as if it were UTF-8, and bytes that are no UTF-8 at all.
    "surrogate": "before%ED%A0%80after",
    "invalid_utf8": "before%FF%FEafter",
    "huge": "x" * 1_000_000,
    "over_the_request_cap": "x" * 3_000_000,
}
# Refused outright: whatever else happens, nothing of the request may be stored.
REFUSED = {"nul", "json_nul", "json_surrogate", "json_deep"}


@dataclass
class Target:
    """One form (or filter) a person uses: where it posts, who posts it, and what it sends."""

    method: str
    url: Callable[[dict], str]
    user: str | None
    fields: Callable[[Client, dict], dict]
    fuzz: list[str]
    # JSON text fields: a template whose @@ receives a JSON escape that decodes to NUL etc.
    json: dict[str, str] = field(default_factory=dict)


def _memory(world: dict, path: str = "") -> str:
    return f"/employees/ava/memory/{path}"


TARGETS = {
    "login": Target(
        "post",
        lambda w: reverse("account_login"),
        None,
        lambda c, w: {"login": "dana", "password": PASSWORD},
        ["login", "password"],
    ),
    "admin_task_add": Target(
        "post",
        lambda w: reverse("admin:tasks_task_add"),
        "root",
        lambda c, w: {
            "employee": w["ava"].pk,
            "title": "Check the queue",
            "input": "Look at the queue.",
            "priority": "20",
        },
        ["title", "input"],
    ),
    "admin_task_search": Target(
        "get", lambda w: reverse("admin:tasks_task_changelist"), "root", lambda c, w: {}, ["q"]
    ),
    "admin_employee_change": Target(
        "post",
        lambda w: reverse("admin:employees_employee_change", args=[w["ava"].pk]),
        "root",
        lambda c, w: _change_form_data(
            c.get(reverse("admin:employees_employee_change", args=[w["ava"].pk]))
        ),
        ["goals", "sop"],
        json={"sop": '[{"text": "Reply @@"}]', "memory_retention_days": '{"episode@@": 3}'},
    ),
    "admin_tool_grant_add": Target(
        "post",
        lambda w: reverse("admin:employees_toolgrant_add"),
        "root",
        lambda c, w: {
            "employee": w["ava"].pk,
            "tool_name": "http_request",
            "policy": "auto",
            "scope": '{"allowed_hosts": ["y.example"]}',
        },
        ["scope"],
        json={"scope": '{"allowed_hosts": ["y.example"], "allowed_methods": ["@@"]}'},
    ),
    "inbox_filter": Target(
        "get", lambda w: "/inbox/", "dana", lambda c, w: {"q": "order"}, ["q", "team"]
    ),
    "inbox_reject": Target(
        "post",
        lambda w: f"/inbox/{w['email'].pk}/reject/",
        "dana",
        lambda c, w: {"reason": "Not this week."},
        ["reason"],
    ),
    "inbox_edit_email": Target(
        "post",
        lambda w: f"/inbox/{w['email'].pk}/edit/approve/",
        "dana",
        lambda c, w: {"to": "ann@example.com", "subject": "Your order", "body": "It shipped."},
        ["to", "subject", "body"],
    ),
    "inbox_edit_json": Target(
        "post",
        lambda w: f"/inbox/{w['http'].pk}/edit/approve/",
        "dana",
        lambda c, w: {"arguments": json.dumps(w["http"].arguments)},
        ["arguments"],
        json={"arguments": '{"method": "POST", "url": "https://x.example/y", "body": "@@"}'},
    ),
    "inbox_bulk": Target(
        "post",
        lambda w: "/inbox/bulk/",
        "dana",
        lambda c, w: {"action": "reject", "reason": "Not now.", "selected": str(w["email"].pk)},
        ["action", "reason", "selected"],
    ),
    "escalation_answer": Target(
        "post",
        lambda w: f"/inbox/escalations/{w['escalation'].pk}/answer/",
        "dana",
        lambda c, w: {"option": "Decline", "answer": "Policy caps refunds at $500."},
        ["option", "answer"],
    ),
    "notifications": Target(
        "post", lambda w: "/inbox/notifications/", "dana", lambda c, w: {"mode": "digest"}, ["mode"]
    ),
    "memory_search": Target(
        "get",
        lambda w: _memory(w),
        "dana",
        lambda c, w: {"q": "Acme", "mode": "text"},
        ["q", "mode", "kind"],
    ),
    "memory_edit": Target(
        "post",
        lambda w: _memory(w, f"{w['memory'].pk}/edit/save/"),
        "dana",
        lambda c, w: {"text": "Acme renews every April."},
        ["text"],
    ),
    "memory_delete": Target(
        "post",
        lambda w: _memory(w, f"{w['memory'].pk}/delete/"),
        "dana",
        lambda c, w: {"reason": "Out of date."},
        ["reason"],
    ),
    "memory_forget_review": Target(
        "get", lambda w: _memory(w, "forget/"), "dana", lambda c, w: {"about": "Acme"}, ["about"]
    ),
    "memory_forget": Target(
        "post",
        lambda w: _memory(w, "forget/confirm/"),
        "dana",
        lambda c, w: {"about": "Acme", "reason": "Asked to.", "selected": str(w["memory"].pk)},
        ["about", "reason"],
    ),
}


@pytest.fixture
def world(db) -> dict:
    support = TeamFactory(name="Support")
    ava = EmployeeFactory(name="Ava", handle="ava", team=support)
    for tool, scope in [
        ("send_email", {"allowed_domains": ["example.com"]}),
        ("http_request", {"allowed_hosts": ["x.example"], "allowed_methods": ["POST"]}),
    ]:
        ToolGrantFactory(employee=ava, tool_name=tool, scope=scope, policy="needs_approval")
    # force_login needs no password; only the login form's person gets one (hashing is slow).
    dana = UserFactory(username="dana", password=None)
    MembershipFactory(team=support, user=dana, role="manager")
    root = UserFactory(username="root", password=None, is_staff=True, is_superuser=True)
    email = make_approval(ava)
    http = make_approval(
        ava,
        tool="http_request",
        arguments={"method": "POST", "url": "https://x.example/y", "body": "{}"},
    )
    task = make_approval(ava).task
    Task.objects.filter(pk=task.pk).update(status=TaskStatus.WAITING_ESCALATION)
    escalation = escalation_create(
        task=task,
        summary="Refund $900?",
        evidence=[],
        options=["Refund", "Decline"],
        recommendation="Decline",
    )
    memory = memory_remember(
        kind=MemoryKind.FACT,
        employee=ava,
        text="Acme renews every March.",
        actor=Actor.system("tests"),
    )
    return {
        "ava": ava,
        "dana": dana,
        "root": root,
        "email": email,
        "http": http,
        "escalation": escalation,
        "memory": memory,
    }


def _state() -> tuple:
    """Everything a refused request could have half-written."""
    return (
        AuditEntry.objects.count(),
        list(Task.objects.order_by("pk").values_list("pk", "status", "title", "input")),
        list(ApprovalRequest.objects.order_by("pk").values_list("pk", "status")),
        list(Escalation.objects.order_by("pk").values_list("pk", "status", "answer")),
        list(MemoryEntry.objects.order_by("pk").values_list("pk", "text")),
        list(Employee.objects.order_by("pk").values_list("pk", "goals", "sop")),
        ToolGrant.objects.count(),
        KnowledgeDocument.objects.count(),
    )


def _encoded(fields: dict, fuzzed: str, raw: str) -> str:
    pairs = [f"{quote(str(k))}={quote(str(v))}" for k, v in fields.items() if k != fuzzed]
    return "&".join([*pairs, f"{quote(fuzzed)}={raw}"])


def _send(client: Client, target: Target, world: dict, fuzzed: str, raw: str):
    fields = target.fields(client, world)
    body = _encoded(fields, fuzzed, raw)
    url = target.url(world)
    if target.method == "get":
        return client.get(f"{url}?{body}", headers=HX)
    return client.post(url, body, content_type="application/x-www-form-urlencoded", headers=HX)


def _cases():
    for name, target in TARGETS.items():
        for fuzzed in target.fuzz:
            for kind in FORM_VALUES:
                yield pytest.param(name, fuzzed, kind, id=f"{name}-{fuzzed}-{kind}")
        for fuzzed in target.json:
            for kind in ("json_nul", "json_surrogate", "json_deep"):
                yield pytest.param(name, fuzzed, kind, id=f"{name}-{fuzzed}-{kind}")


def _raw_value(target: Target, fuzzed: str, kind: str) -> str:
    if kind in FORM_VALUES:
        return FORM_VALUES[kind]
    if kind == "json_deep":
        return quote("[" * 100_000 + "]" * 100_000)
    escape = {"json_nul": "\\u0000", "json_surrogate": "\\ud800"}[kind]
    return quote(target.json[fuzzed].replace("@@", escape))


@pytest.mark.parametrize(("target_name", "fuzzed", "kind"), list(_cases()))
def test_fuzzed_form_input_is_refused_or_stored_never_a_500(world, target_name, fuzzed, kind):
    target = TARGETS[target_name]
    client = Client(raise_request_exception=False)
    if target_name == "login":
        world["dana"].set_password(PASSWORD)
        world["dana"].save()
    elif target.user:
        client.force_login(world[target.user])
    before = _state()
    response = _send(client, target, world, fuzzed, _raw_value(target, fuzzed, kind))
    assert response.status_code < 500, response.content[:500]
    if kind in REFUSED:
        assert _state() == before, "a refused request changed the database"
        if kind != "json_deep":
            text = response.content.decode()
            assert "U+0000" in text or "surrogate" in text, text[:2000]
        if target_name == "login":
            assert "_auth_user_id" not in client.session
    if kind == "over_the_request_cap" and target.method == "post":
        assert response.status_code == 400


def test_uploads_with_nul_bytes_invalid_utf8_or_bad_names_are_refused_or_cleaned(world):
    client = Client(raise_request_exception=False)
    client.force_login(world["dana"])
    url = _memory(world, "documents/upload/")
    cases = {
        "nul_late.txt": b"x" * 9000 + b"\x00 tail",
        "surrogate.txt": b"before \xed\xa0\x80 after",
        "latin1.txt": "caf\xe9".encode("latin-1"),
        "bad\x00name.txt": b"Fine text.",
    }
    for name, content in cases.items():
        before = KnowledgeDocument.objects.count()
        response = client.post(
            url, {"file": SimpleUploadedFile(name, content, "text/plain")}, headers=HX
        )
        assert response.status_code < 500, (name, response.content[:300])
        for document in KnowledgeDocument.objects.all()[before:]:
            assert "\x00" not in document.title


# --- the check itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("plain text, ünïcödé and emoji 🙂", None),
        ({"to": ["a@example.com"], "n": 3, "ok": True, "none": None}, None),
        ("a\x00b", "the NUL character (U+0000) at character 2"),
        ("\ud800", "an unpaired surrogate (U+D800) at character 1"),
        ({"body": ["fine", "x\x00"]}, 'the NUL character (U+0000) at character 2 of ["body"][1]'),
        ({"ke\x00y": 1}, "the NUL character (U+0000) at character 3 of a key"),
    ],
)
def test_storable_problem_names_what_and_where(value, problem):
    found = storable_problem(value)
    assert (found is None) if problem is None else (problem in found)


def test_validate_storable_says_what_to_remove():
    with pytest.raises(ValidationError) as caught:
        validate_storable("x\x00", what="The instructions")
    message = caught.value.messages[0]
    assert message.startswith(
        "The instructions cannot be stored because of the NUL character (U+0000) at character 2."
    )
    assert "remove it" in message.lower()


def test_deeply_nested_values_are_checked_without_recursion():
    value: list = ["\x00"]
    for _ in range(100_000):
        value = [value]
    assert "U+0000" in storable_problem(value)
