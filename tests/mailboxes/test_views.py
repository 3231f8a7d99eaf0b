"""The inbound guard: deliveries up to MAIL_MAX_BYTES while the rest of the site keeps Django's
small request cap, and our own errors are a 500 (the ESP retries), never a 400."""

from __future__ import annotations

import os

import pytest
from django.test import Client
from django.urls import reverse

from mailboxes.models import InboundMail
from tests.mailboxes import esp

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"
ANA = "ana@customer.example"


def test_a_postmark_delivery_with_a_5_mb_attachment_is_stored(client, mailbox, settings):
    content = os.urandom(5 * 1024 * 1024)
    payload = esp.postmark_payload(
        sender=ANA,
        recipient=TO,
        subject="Scan",
        text="The scan.",
        message_id="<big5@c.ex>",
        attachments=[("scan.bin", "application/octet-stream", content)],
    )
    response = esp.postmark(client, payload)
    assert response.status_code == 200, response.content[:300]
    [attachment] = InboundMail.objects.get().task.mail_attachments.all()
    assert bytes(attachment.content) == content
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < 5 * 1024 * 1024  # the site's cap stays small


def test_a_mailgun_multipart_delivery_with_a_5_mb_file_is_stored(client, mailbox):
    content = os.urandom(5 * 1024 * 1024)
    response = esp.mailgun_parsed(
        client,
        sender=ANA,
        recipient=TO,
        subject="File",
        text="x",
        message_id="<mg5@c.ex>",
        attachments=[("f.bin", "application/octet-stream", content)],
    )
    assert response.status_code == 200, response.content[:300]
    assert InboundMail.objects.get().attachments.get().size == len(content)


def test_a_login_post_of_3_mb_is_still_refused():
    response = Client(raise_request_exception=False).post(
        reverse("account_login"), {"login": "x", "password": "y" * 3_000_000}
    )
    assert response.status_code == 400


def test_a_multipart_text_field_over_the_site_cap_is_a_clear_413(client, mailbox):
    response = esp.mailgun_parsed(
        client, sender=ANA, recipient=TO, subject="x", text="y" * 3_000_000, message_id="<m@c>"
    )
    assert response.status_code == 413 and "text field" in response.json()["error"]


def test_an_error_of_our_own_while_storing_is_a_500_so_the_esp_retries(mailbox, monkeypatch):
    from mailboxes import receivers

    def broken(**kwargs):
        raise KeyError("a bug of ours")

    monkeypatch.setattr(receivers, "inbound_mail_receive", broken)
    payload = esp.postmark_payload(
        sender=ANA, recipient=TO, subject="x", text="y", message_id="<e@c.ex>"
    )
    response = esp.postmark(Client(raise_request_exception=False), payload)
    assert response.status_code == 500
