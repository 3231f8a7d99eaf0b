"""What an employee sends: from its own address, threaded to the mail it answers, received by a
real SMTP server (aiosmtpd), with the same headers on every attempt."""

from __future__ import annotations

import socket
from email import message_from_bytes, policy

import pytest

from aiworkforce.audit import Actor
from employees.models import ToolPolicy
from mailboxes.models import InboundMail
from mailboxes.services import mailbox_close
from tasks.jobs import deliver_email
from tasks.loop import run_task
from tasks.models import OutboxEmail, OutboxStatus, TaskStatus
from tasks.outbox import outbox_deliver, outbox_email_create, outbox_sweep
from tasks.services import task_create
from tasks.tools import email as email_tool
from tasks.tools.registry import ToolContext
from tests.factories import EmployeeFactory, ToolGrantFactory
from tests.fakes.openai_server import reply
from tests.mailboxes import esp

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"
ANA = "ana@customer.example"


def _received(envelope):
    return message_from_bytes(envelope.original_content, policy=policy.default)


def _inbound(client, **fields) -> InboundMail:
    mime, message_id = esp.raw_mime(sender=ANA, to=TO, **fields)
    assert esp.mailgun_mime(client, recipient=TO, sender=ANA, mime=mime).status_code == 200
    return InboundMail.objects.get(message_id=message_id)


def test_the_employee_answers_a_mail_from_its_address_threaded_to_it(
    client, mailbox, smtp_peer, model_server
):
    ToolGrantFactory(
        employee=mailbox.employee,
        tool_name="send_email",
        scope={"allowed_domains": ["customer.example"]},
        policy=ToolPolicy.AUTO,
    )
    mail = _inbound(
        client,
        subject="Order 17",
        text="Where is it?",
        references="<older@customer.example>",
    )
    task = mail.task
    model_server.enqueue(
        reply(
            tool_calls=[
                ("send_email", {"to": [ANA], "subject": "Re: Order 17", "body": "Tomorrow."})
            ]
        ),
        reply("Answered."),
    )
    task.refresh_from_db()
    if task.status == TaskStatus.WAITING_HOURS:  # the factory's hours may be over: run it now
        task.status = TaskStatus.QUEUED
        task.save(update_fields=["status"])
    assert run_task(task.pk) == TaskStatus.DONE
    email = OutboxEmail.objects.get(task=task)
    assert deliver_email(email.pk) == "sent"

    [envelope] = smtp_peer.envelopes
    message = _received(envelope)
    assert envelope.mail_from == TO and envelope.rcpt_tos == [ANA]
    assert message["From"] == f"Inbox Clerk <{TO}>"
    assert message["Message-ID"] == email.message_id
    assert email.message_id.endswith(f"@{esp.DOMAIN}>")
    assert message["In-Reply-To"] == mail.message_id
    assert message["References"] == f"<older@customer.example> {mail.message_id}"
    assert message.get_content().strip() == "Tomorrow."


def test_mail_to_someone_else_is_not_threaded(client, mailbox, smtp_peer):
    mail = _inbound(client, subject="Order 18", text="x")
    email = outbox_email_create(
        task=mail.task, call_id="c1", to=["ops@customer.example"], subject="FYI", body="b"
    )
    assert outbox_deliver(outbox_id=email.pk) == "sent"
    message = _received(smtp_peer.envelopes[0])
    assert message["In-Reply-To"] is None and message["References"] is None
    assert message["From"] == f"Inbox Clerk <{TO}>"


def test_an_employee_without_an_open_mailbox_sends_from_the_default_address(mailbox, smtp_peer):
    plain = EmployeeFactory(handle="plain")
    task, _ = task_create(employee=plain, title="t", input="x", dispatch=False)
    email = outbox_email_create(task=task, call_id="c1", to=[ANA], subject="S", body="B")
    assert email.from_email == "" and email.message_id.endswith("@acme.test>")

    mailbox_close(employee=mailbox.employee, actor=Actor.system("tests"))
    task, _ = task_create(employee=mailbox.employee, title="t", input="x", dispatch=False)
    closed = outbox_email_create(task=task, call_id="c2", to=[ANA], subject="S", body="B")
    for row in (email, closed):
        assert outbox_deliver(outbox_id=row.pk) == "sent"
    froms = [_received(envelope)["From"] for envelope in smtp_peer.envelopes]
    assert froms == ["AI Workforce <workforce@acme.test>"] * 2


def test_in_reply_to_must_name_a_message_the_employee_saw(client, mailbox):
    mail = _inbound(client, subject="A", text="a")
    other_task, _ = task_create(employee=mailbox.employee, title="t", input="x", dispatch=False)
    email = outbox_email_create(
        task=other_task,
        call_id="c1",
        to=["ops@customer.example"],
        subject="Re: A",
        body="b",
        in_reply_to=mail.message_id,
    )
    assert email.in_reply_to == mail.message_id and email.references == mail.message_id
    with pytest.raises(ValueError, match="not the Message-ID of a mail"):
        outbox_email_create(
            task=other_task,
            call_id="c2",
            to=[ANA],
            subject="x",
            body="b",
            in_reply_to="<someone-elses@customer.example>",
        )


def test_a_retry_after_the_server_was_down_carries_the_same_headers(
    client, mailbox, smtp_peer, settings
):
    mail = _inbound(client, subject="B", text="b")
    good = settings.MAILERS
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    settings.MAILERS = {
        "default": {**good["default"], "OPTIONS": {**good["default"]["OPTIONS"], "port": dead}}
    }
    email = outbox_email_create(task=mail.task, call_id="c1", to=[ANA], subject="Re: B", body="x")
    assert outbox_deliver(outbox_id=email.pk) == "retry"
    settings.MAILERS = good
    email.refresh_from_db()
    assert outbox_sweep(now=email.next_attempt_at)["sent"] == 1
    [envelope] = smtp_peer.envelopes
    message = _received(envelope)
    assert message["Message-ID"] == email.message_id
    assert message["In-Reply-To"] == mail.message_id
    assert OutboxEmail.objects.get(pk=email.pk).status == OutboxStatus.SENT


def test_every_outgoing_mail_says_it_is_auto_generated(mailbox, smtp_peer):
    task, _ = task_create(employee=mailbox.employee, title="t", input="x", dispatch=False)
    email = outbox_email_create(task=task, call_id="c1", to=[ANA], subject="S", body="B")
    assert outbox_deliver(outbox_id=email.pk) == "sent"
    assert _received(smtp_peer.envelopes[0])["Auto-Submitted"] == "auto-generated"


def _send_email(task, **arguments) -> dict:
    context = ToolContext(task=task, employee=task.employee, call_id="c9", scope={})
    return email_tool.execute(context, {"to": [ANA], "subject": "S", "body": "B", **arguments})


def test_send_email_says_what_is_wrong_with_each_refusal(mailbox):
    task, _ = task_create(employee=mailbox.employee, title="t", input="x", dispatch=False)
    unknown = _send_email(task, in_reply_to="<never-seen@customer.example>")
    assert "not the Message-ID of a mail" in unknown["error"]
    assert "line break" in _send_email(task, subject="Hi\r\nBcc: eve@spam.example")["error"]

    # A line break in the employee's name is not an in_reply_to problem: it is dropped.
    employee = mailbox.employee
    employee.name = "Inbox\r\nBcc: eve@spam.example"
    employee.save(update_fields=["name"])
    result = _send_email(task)
    assert result["status"] == "queued", result
    assert OutboxEmail.objects.get(pk=result["outbox_id"]).from_email == (
        f'"Inbox Bcc: eve@spam.example" <{TO}>'
    )
