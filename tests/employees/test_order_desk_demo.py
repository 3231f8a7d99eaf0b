"""The demo's order desk, offline: Ava looks the order up over MCP (stdio, the shipped server),
proposes a refund that waits in the inbox, and the approved refund is made exactly once; a
request that names no order never touches the order desk."""

from __future__ import annotations

import json

import pytest
from anymail.inbound import AnymailInboundMessage

from aiworkforce.llm.offline import OfflineEngine
from approvals.models import ApprovalRequest
from approvals.services import approval_decide
from employees.demo import LOOKUP_ORDER, REFUND_ORDER, load_demo_tasks, load_demo_workforce
from employees.models import Employee, ToolGrant, ToolPolicy
from mailboxes.models import InboundStatus, Mailbox
from mailboxes.services import inbound_mail_receive
from tasks.loop import run_task
from tasks.mcp import client
from tasks.mcp.tools import forget_live_definitions
from tasks.models import McpServer, StepKind, Task, TaskStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger(settings, tmp_path):
    settings.OPENAI_API_KEY = ""  # offline mode
    settings.VAR_DIR = tmp_path
    yield tmp_path / "order-desk-refunds.jsonl"
    client.close_sessions()
    forget_live_definitions()


def _tool_steps(task: Task) -> list[tuple[str, str]]:
    steps = task.steps.filter(kind=StepKind.TOOL_CALL).order_by("seq")
    return [(step.payload["name"], step.payload["status"]) for step in steps]


def test_ava_looks_the_order_up_and_her_refund_waits_for_approval_then_runs_once(ledger, superuser):
    load_demo_workforce(owner=superuser)
    load_demo_tasks(base_url="http://127.0.0.1:9/")
    ava = Employee.objects.get(handle="ava-support")
    grants = dict(ava.tool_grants.values_list("tool_name", "policy"))
    assert grants[LOOKUP_ORDER] == ToolPolicy.AUTO  # read-only, by its annotations
    assert grants[REFUND_ORDER] == ToolPolicy.NEEDS_APPROVAL
    task = Task.objects.get(employee=ava, idempotency_key="demo:broken-order")

    assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL
    refund = ApprovalRequest.objects.get(task=task, status="pending")
    assert (refund.tool_name, refund.arguments["order_id"]) == (REFUND_ORDER, "A-1002")
    (lookup,) = [s.payload for s in task.steps.filter(kind=StepKind.TOOL_CALL)]
    assert "total $84.00" in lookup["result"]["content"]
    assert not ledger.exists()  # nothing refunded before a person decides

    approval_decide(approval=refund, user=superuser, decision="approved")
    assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL  # now the reply to Jane
    reply = ApprovalRequest.objects.get(task=task, status="pending")
    assert reply.tool_name == "send_email" and reply.arguments["to"] == ["jane@example.com"]
    approval_decide(approval=reply, user=superuser, decision="approved")
    assert run_task(task.pk) == TaskStatus.DONE

    (entry,) = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert (entry["order_id"], entry["amount"]) == ("A-1002", 84.0)
    assert _tool_steps(task) == [
        (LOOKUP_ORDER, "ok"),
        (REFUND_ORDER, "started"),  # the intent, recorded before the call
        (REFUND_ORDER, "ok"),
        ("send_email", "ok"),
    ]


def test_a_request_that_names_no_order_skips_the_order_desk(ledger, superuser):
    load_demo_workforce(owner=superuser)
    load_demo_tasks(base_url="http://127.0.0.1:9/")
    task = Task.objects.get(idempotency_key="demo:password-reset")

    assert run_task(task.pk) == TaskStatus.WAITING_APPROVAL

    assert ApprovalRequest.objects.get(task=task).tool_name == "send_email"
    assert _tool_steps(task) == []  # no lookup, no refund: the e-mail waits first


def test_the_demo_loads_without_the_order_desk_when_it_cannot_start(ledger, settings, superuser):
    McpServer.objects.create(name="orders", transport="stdio", command="/nonexistent/python")

    load_demo_workforce(owner=superuser)

    ava = Employee.objects.get(handle="ava-support")
    assert not ToolGrant.objects.filter(employee=ava, tool_name__startswith="mcp:").exists()
    assert all("mcp:" not in json.dumps(step) for step in ava.sop)


def test_offline_steps_with_when_words_apply_only_to_tasks_that_mention_them():
    sop = [
        {"text": "Look it up.", "when": ["order"], "tool": {"name": "lookup", "arguments": {}}},
        {"text": "Answer.", "tool": {"name": "reply", "arguments": {"ref": "{first_reference}"}}},
    ]
    about_an_order = OfflineEngine(sop=sop, title="Order INV-2043", task_input="Where is it?")
    other = OfflineEngine(sop=sop, title="Hello", task_input="How do I log in?")

    assert [hint["tool"]["name"] for hint in about_an_order.hints] == ["lookup", "reply"]
    assert about_an_order.values["first_reference"] == "INV-2043"
    assert [hint["tool"]["name"] for hint in other.hints] == ["reply"]
    summary = other._summary([{"role": "tool", "content": "{}"}])
    assert "Look it up. (not needed: the task does not mention order)" in summary


def test_mail_from_a_customer_reaches_ava_and_a_stranger_is_held(ledger, superuser):
    load_demo_workforce(owner=superuser)
    mailbox = Mailbox.objects.get(employee__handle="ava-support")
    assert (mailbox.address, mailbox.allowed_senders) == (
        "ava@support.example.com",
        ["example.com"],
    )

    def deliver(sender: str, subject: str):
        message = AnymailInboundMessage.construct(
            from_email=sender, to=mailbox.address, subject=subject, text="Order A-1003 is late."
        )
        message["Message-ID"] = f"<{subject.replace(' ', '-')}@mail.test>"
        (mail,) = inbound_mail_receive(message=message, esp_name="test")
        return mail

    customer = deliver("omar@example.com", "Where is my order")
    stranger = deliver("someone@elsewhere.test", "Refund every order")

    assert customer.status == InboundStatus.RUN and customer.task.employee == mailbox.employee
    assert stranger.status == InboundStatus.HELD and stranger.task is None
