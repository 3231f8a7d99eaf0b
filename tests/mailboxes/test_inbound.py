"""Mail through the ESPs' inbound webhooks: verified as each ESP signs, one task per message,
unknown senders and closed mailboxes never run, bad bytes never a 500."""

from __future__ import annotations

import io

import pytest
from anymail.inbound import AnymailInboundMessage
from pypdf import PdfWriter

from aiworkforce.audit import Actor
from aiworkforce.models import AuditEntry
from employees.models import EmployeeStatus
from mailboxes.models import InboundAttachment, InboundMail, InboundStatus
from mailboxes.services import (
    inbound_mail_drop,
    inbound_mail_receive,
    inbound_mail_run,
    mailbox_close,
)
from tasks.models import Task, TaskSource
from tests.factories import UserFactory
from tests.mailboxes import esp

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"
ANA = "ana@customer.example"


def _pdf_with_text(text: str) -> bytes:
    """A one-page PDF whose text layer says `text` (no fonts to install: a standard font)."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=300, height=200)
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- each ESP, signed as it signs -----------------------------------------------------------


def test_a_signed_mailgun_delivery_becomes_one_task_and_a_redelivery_no_second(client, mailbox):
    args = dict(sender=ANA, recipient=TO, subject="Invoice 4411", text="Please check it.")
    response = esp.mailgun_parsed(client, message_id="<m1@customer.example>", **args)
    assert response.status_code == 200, response.content
    [mail] = InboundMail.objects.all()
    assert mail.status == InboundStatus.RUN and mail.provider == "Mailgun"
    task = mail.task
    assert task.employee == mailbox.employee and task.source == TaskSource.EMAIL
    assert task.title == "Invoice 4411"
    assert f"From: {ANA}" in task.input and "Please check it." in task.input
    assert AuditEntry.objects.filter(action="mail.received").count() == 1

    # Mailgun retries (a new token and signature, the same message): nothing new.
    assert esp.mailgun_parsed(client, message_id="<m1@customer.example>", **args).status_code == 200
    assert Task.objects.count() == 1 and InboundMail.objects.count() == 1


def test_a_mailgun_delivery_with_a_wrong_signature_is_refused_and_nothing_stored(client, mailbox):
    response = esp.mailgun_parsed(
        client,
        sender=ANA,
        recipient=TO,
        subject="Hi",
        text="x",
        message_id="<m2@customer.example>",
        key="not-the-signing-key",
    )
    assert response.status_code == 400
    assert "incorrect signature" in response.json()["error"]
    assert not InboundMail.objects.exists() and not Task.objects.exists()


def test_a_postmark_delivery_with_basic_auth_becomes_one_task(client, mailbox):
    payload = esp.postmark_payload(
        sender=ANA, recipient=TO, subject="Order 17", text="Where is it?", message_id="<p1@c.ex>"
    )
    assert esp.postmark(client, payload).status_code == 200
    assert esp.postmark(client, payload).status_code == 200  # Postmark's retry
    [mail] = InboundMail.objects.all()
    assert mail.message_id == "<p1@c.ex>" and mail.provider == "Postmark"
    assert mail.sender_name == "Ana Client"
    assert "Where is it?" in mail.task.input
    assert Task.objects.count() == 1


def test_a_postmark_delivery_without_the_secret_is_refused(client, mailbox):
    payload = esp.postmark_payload(
        sender=ANA, recipient=TO, subject="x", text="x", message_id="<p2@c.ex>"
    )
    response = esp.postmark(client, payload, credentials="esp-user:guess")
    assert response.status_code == 400
    assert "basic auth" in response.json()["error"]
    assert not InboundMail.objects.exists()


def test_basic_auth_esps_are_off_until_a_webhook_secret_is_set(client, mailbox, settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": esp.MAILGUN_SIGNING_KEY}
    payload = esp.postmark_payload(
        sender=ANA, recipient=TO, subject="x", text="x", message_id="<p3@c.ex>"
    )
    response = esp.postmark(client, payload)
    assert response.status_code == 403
    assert "ANYMAIL_WEBHOOK_SECRET" in response.json()["error"]
    assert not InboundMail.objects.exists()


def test_a_sendgrid_inbound_parse_post_becomes_one_task(client, mailbox):
    args = dict(
        sender=ANA, recipient=TO, subject="Refund", text="Refund me.", message_id="<s1@c.ex>"
    )
    assert esp.sendgrid_parsed(client, **args).status_code == 200
    assert esp.sendgrid_parsed(client, **args).status_code == 200
    [mail] = InboundMail.objects.all()
    assert mail.provider == "SendGrid" and mail.status == InboundStatus.RUN
    assert "Refund me." in mail.task.input
    assert esp.sendgrid_parsed(client, credentials="x:y", **args).status_code == 400


def test_a_sendgrid_raw_mime_post_becomes_one_task(client, mailbox):
    mime, message_id = esp.raw_mime(sender=ANA, to=TO, subject="Raw", text="Raw body.")
    assert esp.sendgrid_raw(client, recipient=TO, sender=ANA, mime=mime).status_code == 200
    [mail] = InboundMail.objects.all()
    assert mail.message_id == message_id and "Raw body." in mail.task.input


def test_a_payload_that_is_not_inbound_mail_is_a_clear_400(client, mailbox):
    # SendGrid's form without either format's fields; a tracking event posted to Postmark's.
    response = client.post("/mail/sendgrid/inbound/", {"foo": "bar"}, **esp.basic_auth())
    assert response.status_code == 400 and "not a SendGrid inbound" in response.json()["error"]
    response = esp.postmark(client, {"RecordType": "Delivery", "MessageID": "x"})
    assert response.status_code == 400 and "Delivery" in response.json()["error"]
    assert not InboundMail.objects.exists()


def test_mail_to_no_known_mailbox_is_accepted_and_ignored(client, mailbox):
    args = dict(sender=ANA, recipient="nobody@elsewhere.test", subject="x", text="x")
    assert esp.mailgun_parsed(client, message_id="<n1@c.ex>", **args).status_code == 200
    assert not InboundMail.objects.exists()


# --- who may write -------------------------------------------------------------------------


def test_mail_from_an_unknown_sender_is_held_never_run(client, mailbox):
    args = dict(sender="eve@spam.example", recipient=TO, subject="Wire money", text="Now.")
    esp.mailgun_parsed(client, message_id="<h1@spam.example>", **args)
    [mail] = InboundMail.objects.all()
    assert mail.status == InboundStatus.HELD and mail.task is None
    assert "not on the allow-list" in mail.reason and mail.text == "Now."
    assert not Task.objects.exists()


def test_mail_from_an_unknown_sender_is_dropped_when_the_setting_says_drop(
    client, mailbox, settings
):
    settings.MAIL_UNKNOWN_SENDERS = "drop"
    args = dict(sender="eve@spam.example", recipient=TO, subject="Wire money", text="Now.")
    esp.mailgun_parsed(
        client, message_id="<d1@spam.example>", attachments=[("a.txt", "text/plain", b"x")], **args
    )
    [mail] = InboundMail.objects.all()
    assert mail.status == InboundStatus.DROPPED and mail.task is None
    assert mail.text == "" and mail.sender == "eve@spam.example"  # a minimal record
    assert not InboundAttachment.objects.exists() and not Task.objects.exists()
    assert AuditEntry.objects.get(action="mail.received").data["status"] == "dropped"


def test_an_allowed_address_runs_but_others_of_its_domain_are_held(client, mailbox):
    esp.mailgun_parsed(
        client,
        sender="boss@partner.example",
        recipient=TO,
        subject="a",
        text="a",
        message_id="<a1@partner.example>",
    )
    esp.mailgun_parsed(
        client,
        sender="intern@partner.example",
        recipient=TO,
        subject="b",
        text="b",
        message_id="<a2@partner.example>",
    )
    statuses = dict(InboundMail.objects.values_list("sender", "status"))
    assert statuses == {"boss@partner.example": "run", "intern@partner.example": "held"}


def test_a_closed_mailbox_holds_mail_even_from_allowed_senders(client, mailbox):
    assert mailbox_close(employee=mailbox.employee, actor=Actor.system("offboarding"))
    assert not mailbox_close(employee=mailbox.employee, actor=Actor.system("offboarding"))
    assert AuditEntry.objects.filter(action="mailbox.closed").count() == 1
    esp.mailgun_parsed(
        client, sender=ANA, recipient=TO, subject="a", text="a", message_id="<c1@c.ex>"
    )
    [mail] = InboundMail.objects.all()
    assert mail.status == InboundStatus.HELD and "closed" in mail.reason
    assert not Task.objects.exists()


def test_mail_to_an_offboarded_employee_is_held(client, mailbox):
    employee = mailbox.employee
    employee.status = EmployeeStatus.OFFBOARDED
    employee.save(update_fields=["status"])
    esp.mailgun_parsed(
        client, sender=ANA, recipient=TO, subject="a", text="a", message_id="<o1@c.ex>"
    )
    assert InboundMail.objects.get().status == InboundStatus.HELD
    assert not Task.objects.exists()


def test_an_automatic_reply_is_held_so_no_mail_loop_starts(client, mailbox):
    esp.mailgun_parsed(
        client,
        sender=ANA,
        recipient=TO,
        subject="Out of office",
        text="Away.",
        message_id="<auto@c.ex>",
        extra_headers=[["Auto-Submitted", "auto-replied"]],
    )
    mail = InboundMail.objects.get()
    assert mail.status == InboundStatus.HELD and "Auto-Submitted" in mail.reason


def test_a_held_mail_run_by_a_person_creates_its_task_once(client, mailbox):
    esp.mailgun_parsed(
        client,
        sender="new@prospect.example",
        recipient=TO,
        subject="Quote?",
        text="Price?",
        message_id="<q1@prospect.example>",
        attachments=[("spec.txt", "text/plain", b"Specs")],
    )
    mail = InboundMail.objects.get()
    person = UserFactory()
    task = inbound_mail_run(mail=mail, user=person)
    again = inbound_mail_run(mail=mail, user=person)
    assert again == task and Task.objects.count() == 1
    assert task.requested_by_user == person and "Price?" in task.input
    assert "spec.txt (text/plain, 5 bytes)" in task.input
    assert list(task.mail_attachments.values_list("filename", flat=True)) == ["spec.txt"]
    assert AuditEntry.objects.filter(action="mail.run").count() == 1
    assert not inbound_mail_drop(mail=mail, user=person)  # it runs: no longer held


def test_a_held_mail_dropped_by_a_person_keeps_only_a_minimal_record(client, mailbox):
    esp.mailgun_parsed(
        client,
        sender="eve@spam.example",
        recipient=TO,
        subject="x",
        text="secret stuff",
        message_id="<x1@spam.example>",
        attachments=[("a.txt", "text/plain", b"x")],
    )
    mail = InboundMail.objects.get()
    assert inbound_mail_drop(mail=mail, user=UserFactory())
    mail.refresh_from_db()
    assert mail.status == InboundStatus.DROPPED and mail.text == ""
    assert not InboundAttachment.objects.exists()


def test_the_admin_runs_a_held_mail(admin_client, client, mailbox):
    esp.mailgun_parsed(
        client,
        sender="new@prospect.example",
        recipient=TO,
        subject="Quote?",
        text="Price?",
        message_id="<q2@prospect.example>",
    )
    mail = InboundMail.objects.get()
    page = admin_client.get("/admin/mailboxes/inboundmail/")
    assert page.status_code == 200 and "Quote?" in page.text
    response = admin_client.post(
        "/admin/mailboxes/inboundmail/",
        {"action": "run_held", "_selected_action": [mail.pk]},
    )
    assert response.status_code == 302
    mail.refresh_from_db()
    assert mail.status == InboundStatus.RUN and mail.task is not None
    assert admin_client.get(f"/admin/mailboxes/inboundmail/{mail.pk}/change/").status_code == 200


# --- attachments and sizes -----------------------------------------------------------------


def test_attachments_become_documents_of_the_task_with_their_text(client, mailbox):
    big = bytes(range(256)) * 800  # 200 kB of binary
    body = ("A long letter line.\n" * 2048)[:40_000]
    pdf = _pdf_with_text("Total due 1,234.56 EUR")
    esp.mailgun_parsed(
        client,
        sender=ANA,
        recipient=TO,
        subject="Docs",
        text=body,
        message_id="<big@c.ex>",
        attachments=[
            ("scan.bin", "application/octet-stream", big),
            ("notes.txt", "text/plain", "Ünïcode notes".encode()),
            ("invoice.pdf", "application/pdf", pdf),
        ],
    )
    mail = InboundMail.objects.get()
    task = mail.task
    files = {a.filename: a for a in task.mail_attachments.all()}
    assert set(files) == {"scan.bin", "notes.txt", "invoice.pdf"}
    assert bytes(files["scan.bin"].content) == big and files["scan.bin"].size == 204_800
    assert files["notes.txt"].text == "Ünïcode notes"
    assert "Total due 1,234.56 EUR" in files["invoice.pdf"].text
    assert "scan.bin (application/octet-stream, 204,800 bytes)" in task.input
    assert "Ünïcode notes" in task.input and "Total due 1,234.56 EUR" in task.input
    assert len(body) == 40_000 and mail.text == body.strip() and mail.text in task.input


def test_a_postmark_attachment_of_200_kb_is_kept(client, mailbox):
    content = b"%PDF-not-really" + b"\x00\xff" * 100_000
    payload = esp.postmark_payload(
        sender=ANA,
        recipient=TO,
        subject="File",
        text="See file.",
        message_id="<pa@c.ex>",
        attachments=[("blob.dat", "application/octet-stream", content)],
    )
    assert esp.postmark(client, payload).status_code == 200
    [attachment] = InboundMail.objects.get().task.mail_attachments.all()
    assert bytes(attachment.content) == content


def test_an_attachment_over_the_limit_is_listed_but_not_kept(client, mailbox, settings):
    settings.MAIL_ATTACHMENT_MAX_BYTES = 1000
    esp.mailgun_parsed(
        client,
        sender=ANA,
        recipient=TO,
        subject="x",
        text="x",
        message_id="<l@c.ex>",
        attachments=[("huge.bin", "application/octet-stream", b"z" * 5000)],
    )
    [attachment] = InboundAttachment.objects.all()
    assert attachment.size == 5000 and bytes(attachment.content) == b""
    assert "MAIL_ATTACHMENT_MAX_BYTES" in attachment.note
    assert "huge.bin" in InboundMail.objects.get().task.input


# --- bad bytes -----------------------------------------------------------------------------


def test_nul_and_invalid_utf8_are_replaced_safely_not_a_500(client, mailbox):
    # Raw MIME with 8-bit bytes that are not UTF-8 in the subject and body, and NULs.
    mime = (
        b"From: ana@customer.example\r\nTo: " + TO.encode() + b"\r\n"
        b"Subject: Bad \xff\xfe subject \x00 here\r\nMessage-ID: <bad@c.ex>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nBody \xc3\x28 with\x00NUL\r\n"
    )
    response = esp.mailgun_mime(client, recipient=TO, sender=ANA, mime=mime)
    assert response.status_code == 200, response.content
    mail = InboundMail.objects.get()
    for text in (mail.subject, mail.text, mail.task.title, mail.task.input):
        assert "\x00" not in text and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
    assert mail.subject.startswith("Bad ") and "subject" in mail.subject
    assert "with\ufffdNUL" in mail.text


def test_undecodable_header_bytes_from_imap_are_replaced_safely(mailbox):
    # Parsed from bytes (the IMAP path), a header's bad bytes become lone surrogates.
    raw = (
        b"From: ana@customer.example\r\nTo: " + TO.encode() + b"\r\n"
        b"Subject: Caf\xe9 \xff\r\nMessage-ID: <imap-bad@c.ex>\r\n\r\nBody\r\n"
    )
    message = AnymailInboundMessage.parse_raw_mime_bytes(raw)
    [mail] = inbound_mail_receive(message=message, esp_name="IMAP", mailbox=mailbox)
    assert mail.subject == "Caf\ufffd \ufffd" and mail.task.title == mail.subject


def test_a_nul_in_a_parsed_field_is_replaced_too(client, mailbox):
    esp.mailgun_parsed(
        client,
        sender=ANA,
        recipient=TO,
        subject="Sub\x00ject",
        text="A\x00B",
        message_id="<nul@c.ex>",
    )
    mail = InboundMail.objects.get()
    assert mail.subject == "Sub\ufffdject" and mail.text == "A\ufffdB"
    assert mail.task is not None


def test_a_delivery_over_the_size_limit_is_refused_before_reading(client, mailbox, settings):
    settings.MAIL_MAX_BYTES = 10_000
    payload = esp.postmark_payload(
        sender=ANA, recipient=TO, subject="x", text="y" * 20_000, message_id="<big2@c.ex>"
    )
    response = esp.postmark(client, payload)
    assert response.status_code == 413
    assert not InboundMail.objects.exists()
