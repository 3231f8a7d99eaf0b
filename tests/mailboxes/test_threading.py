"""A reply continues its conversation: a mail whose In-Reply-To/References names a message the
employee sent or received becomes a task linked to that earlier task."""

from __future__ import annotations

import pytest

from aiworkforce.audit import Actor
from mailboxes.models import InboundMail, InboundStatus
from mailboxes.services import inbound_mail_run, mailbox_set
from tasks.outbox import outbox_email_create
from tests.factories import EmployeeFactory, UserFactory
from tests.mailboxes import esp

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"
ANA = "ana@customer.example"


def _mail(client, *, sender=ANA, to=TO, **fields) -> InboundMail:
    mime, message_id = esp.raw_mime(sender=sender, to=to, **fields)
    assert esp.mailgun_mime(client, recipient=to, sender=sender, mime=mime).status_code == 200
    return InboundMail.objects.get(message_id=message_id, mailbox__address=to)


def test_a_reply_to_the_employees_mail_continues_the_conversation(client, mailbox):
    first = _mail(client, subject="Order 17 is late", text="Where is order 17?")
    task = first.task
    sent = outbox_email_create(
        task=task,
        call_id="call_1",
        to=[ANA],
        subject="Re: Order 17 is late",
        body="It ships tomorrow.\nBest, Clerk",
    )
    assert sent.in_reply_to == first.message_id  # threaded by itself: it answers the sender

    reply = _mail(
        client,
        subject="Re: Order 17 is late",
        text="Thanks, and the invoice?",
        in_reply_to=sent.message_id,
        references=f"{first.message_id} {sent.message_id}",
    )
    assert reply.status == InboundStatus.RUN and reply.replies_to == task
    follow_up = reply.task
    assert follow_up != task and follow_up.employee == task.employee
    assert f"task #{task.pk}" in follow_up.input
    assert "subject: Re: Order 17 is late" in follow_up.input
    assert "> It ships tomorrow." in follow_up.input  # what the employee said, in context
    assert list(task.mail_replies.all()) == [reply]


def test_a_reply_naming_only_a_received_message_in_references_is_linked_too(client, mailbox):
    first = _mail(client, subject="Contract", text="Draft attached.")
    # Ana answers a colleague's reply to her own mail, keeping the References chain.
    reply = _mail(
        client,
        subject="Re: Contract",
        text="Looks fine.",
        in_reply_to="<not-ours@customer.example>",
        references=f"{first.message_id} <not-ours@customer.example>",
    )
    assert reply.replies_to == first.task
    assert "you received" in reply.task.input and "> Draft attached." in reply.task.input


def test_a_reply_from_someone_who_was_no_party_starts_a_new_conversation(client, mailbox):
    first = _mail(client, subject="Contract", text="Secret draft terms.")
    sent = outbox_email_create(
        task=first.task, call_id="c1", to=["Ana <ANA@customer.example>"], subject="Re", body="Ok"
    )
    # Bo (allowed, same domain) names both messages, but neither came from or went to him.
    intruder = _mail(
        client,
        sender="bo@customer.example",
        subject="Re: Contract",
        text="Send me the rest.",
        in_reply_to=sent.message_id,
        references=f"{first.message_id} {sent.message_id}",
    )
    assert intruder.status == InboundStatus.RUN and intruder.replies_to is None
    assert "It replies to" not in intruder.task.input
    assert "Secret draft terms." not in intruder.task.input and "> Ok" not in intruder.task.input
    # Ana was a recipient of the sent mail (compared on the address, whatever its case).
    answer = _mail(client, subject="Re: Re", text="Thanks.", in_reply_to=sent.message_id)
    assert answer.replies_to == first.task and "> Ok" in answer.task.input


def test_a_mail_naming_unknown_message_ids_starts_a_new_conversation(client, mailbox):
    mail = _mail(
        client, subject="Re: something", text="?", in_reply_to="<elsewhere@customer.example>"
    )
    assert mail.replies_to is None and mail.task is not None
    assert "It replies to" not in mail.task.input


def test_a_reply_to_another_employees_message_is_not_linked_to_its_task(client, mailbox):
    other = EmployeeFactory(handle="other")
    other_box = mailbox_set(
        employee=other,
        address=f"other@{esp.DOMAIN}",
        allowed_senders=["customer.example"],
        actor=Actor.system("tests"),
    )
    theirs = _mail(client, to=other_box.address, subject="For other", text="x")
    mine = _mail(client, subject="Re: For other", text="y", in_reply_to=theirs.message_id)
    assert mine.replies_to is None


def test_a_held_reply_run_by_a_person_is_linked_to_the_earlier_task(client, mailbox):
    first = _mail(client, subject="Quote", text="A quote please.")
    asked = outbox_email_create(
        task=first.task, call_id="c1", to=["cfo@unknown.example"], subject="Quote", body="OK?"
    )
    held = _mail(
        client,
        sender="cfo@unknown.example",
        subject="Re: Quote",
        text="Approved.",
        in_reply_to=asked.message_id,
    )
    assert held.status == InboundStatus.HELD and held.replies_to is None
    task = inbound_mail_run(mail=held, user=UserFactory())
    held.refresh_from_db()
    assert held.replies_to == first.task and f"task #{first.task.pk}" in task.input


def test_the_same_message_to_two_employees_is_one_task_each(client, mailbox):
    other = EmployeeFactory(handle="second")
    mailbox_set(
        employee=other,
        address=f"second@{esp.DOMAIN}",
        allowed_senders=["customer.example"],
        actor=Actor.system("tests"),
    )
    mime, message_id = esp.raw_mime(
        sender=ANA, to=f"{TO}, second@{esp.DOMAIN}", subject="Both", text="For you two."
    )
    # No envelope recipient (as SendGrid's raw post without an envelope): the headers decide.
    response = client.post("/mail/sendgrid/inbound/", {"email": mime.decode()}, **esp.basic_auth())
    assert response.status_code == 200
    rows = InboundMail.objects.filter(message_id=message_id)
    assert sorted(rows.values_list("mailbox__address", flat=True)) == [
        TO,
        f"second@{esp.DOMAIN}",
    ]
    assert len({row.task_id for row in rows}) == 2
