"""What a sender or a Message-ID is, read from untrusted headers: never shortened into another
address, never two readings of one From, never too long for its column."""

from __future__ import annotations

import pytest
from anymail.inbound import AnymailInboundMessage

from mailboxes.models import InboundMail, InboundStatus
from mailboxes.parsing import MAX_REFERENCES, mail_parse
from mailboxes.services import inbound_mail_receive
from tasks.models import Task
from tests.mailboxes import esp

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"


def _parse(headers: str, body: str = "Hello.") -> AnymailInboundMessage:
    raw = f"{headers}\r\nTo: {TO}\r\nSubject: s\r\n\r\n{body}\r\n"
    return AnymailInboundMessage.parse_raw_mime_bytes(raw.encode())


def test_a_from_address_too_long_to_store_is_held_never_cut_into_an_allowed_one(client, mailbox):
    # Cut to 254 characters it would read ...@customer.example, which is on the allow-list.
    sender = "a" * 237 + "@customer.example.attacker.net"
    assert sender[:254].endswith("@customer.example")
    response = esp.mailgun_parsed(
        client, sender=sender, recipient=TO, subject="Pay", text="Now.", message_id="<l1@x.ex>"
    )
    assert response.status_code == 200
    mail = InboundMail.objects.get()
    assert mail.status == InboundStatus.HELD and mail.sender == ""
    assert "longer than 254" in mail.reason and not Task.objects.exists()


def test_a_local_part_over_64_characters_is_no_usable_sender(mailbox):
    message = _parse(f"From: {'x' * 65}@customer.example\r\nMessage-ID: <l2@x.ex>")
    [mail] = inbound_mail_receive(message=message, esp_name="IMAP", mailbox=mailbox)
    assert mail.status == InboundStatus.HELD and mail.sender == "" and mail.task is None


def test_recipients_too_long_are_dropped_not_cut_into_one_of_ours():
    long_to = "clerk@" + esp.DOMAIN + "." + "z" * 250 + ".test"
    message = AnymailInboundMessage.parse_raw_mime_bytes(
        f"From: ana@customer.example\r\nTo: {long_to}, ana2@customer.example\r\n\r\nx".encode()
    )
    assert mail_parse(message).recipients == ["ana2@customer.example"]


@pytest.mark.parametrize(
    "from_header",
    [
        "boss@customer.example <evil@attacker.example>",
        "ana@customer.example)<bob@attacker.example>",
        "ana@customer.example, bob@attacker.example",
    ],
)
def test_an_ambiguous_from_is_held_with_the_reason(mailbox, from_header):
    message = _parse(f"From: {from_header}\r\nMessage-ID: <amb@x.ex>")
    [mail] = inbound_mail_receive(message=message, esp_name="IMAP", mailbox=mailbox)
    assert mail.status == InboundStatus.HELD and mail.task is None
    assert mail.sender == "" and "sender is not clear" in mail.reason
    assert "attacker.example" in mail.sender_name  # the person deciding sees the header


def test_two_from_headers_are_held(mailbox):
    message = _parse("From: ana@customer.example\r\nFrom: bob@attacker.example")
    [mail] = inbound_mail_receive(message=message, esp_name="IMAP", mailbox=mailbox)
    assert mail.status == InboundStatus.HELD and "2 From headers" in mail.reason


def test_a_plain_from_with_a_display_name_still_runs(mailbox):
    message = _parse('From: "Ana, Client" <Ana@Customer.example>\r\nMessage-ID: <ok@x.ex>')
    [mail] = inbound_mail_receive(message=message, esp_name="IMAP", mailbox=mailbox)
    assert mail.status == InboundStatus.RUN and mail.sender == "ana@customer.example"
    assert mail.sender_name == "Ana, Client"


def test_message_ids_too_long_are_ignored_and_the_mail_is_stored(client, mailbox):
    huge = "<" + "m" * 300 + "@customer.example>"
    refs = " ".join(f"<r{n}@customer.example>" for n in range(60)) + " " + huge
    mime, _ = esp.raw_mime(
        sender="ana@customer.example",
        to=TO,
        subject="Long ids",
        text="x",
        message_id=huge,
        in_reply_to=huge,
        references=refs,
    )
    response = esp.mailgun_mime(client, recipient=TO, sender="ana@customer.example", mime=mime)
    assert response.status_code == 200, response.content
    mail = InboundMail.objects.get()
    assert mail.message_id == "" and mail.in_reply_to == ""
    assert mail.message_key.startswith("Mailgun:")  # the fallback: the ESP's event id
    kept = mail.references.split()
    assert len(kept) == MAX_REFERENCES and huge not in kept
    assert kept[0] == "<r0@customer.example>" and kept[-1] == "<r59@customer.example>"
    assert mail.status == InboundStatus.RUN
