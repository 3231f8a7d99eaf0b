"""A mail's files on its task's page: listed, downloadable as files (never shown inline, since
they are untrusted), only by someone who may see the task."""

from __future__ import annotations

import pytest
from django.urls import reverse

from mailboxes.models import InboundMail
from tests.factories import UserFactory
from tests.mailboxes import esp

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"
ANA = "ana@customer.example"
PAGE = b"<html><script>alert(1)</script></html>"


def test_the_task_page_lists_the_mails_files_and_serves_them_as_downloads(
    client, admin_client, mailbox, settings
):
    settings.MAIL_ATTACHMENT_MAX_BYTES = 1000
    esp.mailgun_parsed(
        client,
        sender=ANA,
        recipient=TO,
        subject="Files",
        text="See the files.",
        message_id="<files@c.ex>",
        attachments=[
            ("page.html", "text/html", PAGE),
            ("huge.bin", "application/octet-stream", b"x" * 5000),
        ],
    )
    task = InboundMail.objects.get().task
    page_file, huge = task.mail_attachments.order_by("pk")

    html = admin_client.get(reverse("tasks:detail", args=[task.pk])).content.decode()
    assert "Documents from the mail" in html
    url = reverse("tasks:attachment", args=[task.pk, page_file.pk])
    assert f'href="{url}"' in html
    assert "huge.bin" in html and reverse("tasks:attachment", args=[task.pk, huge.pk]) not in html

    download = admin_client.get(url)
    assert download.status_code == 200 and download.content == PAGE
    assert download["Content-Type"] == "application/octet-stream"
    assert download["Content-Disposition"] == 'attachment; filename="page.html"'
    assert download["X-Content-Type-Options"] == "nosniff"
    assert admin_client.get(reverse("tasks:attachment", args=[task.pk, huge.pk])).status_code == 404


def test_someone_who_may_not_see_the_task_gets_a_404(client, mailbox):
    esp.mailgun_parsed(
        client,
        sender=ANA,
        recipient=TO,
        subject="Files",
        text="See the file.",
        message_id="<secret@c.ex>",
        attachments=[("salaries.txt", "text/plain", b"confidential")],
    )
    task = InboundMail.objects.get().task
    attachment = task.mail_attachments.get()
    client.force_login(UserFactory())  # in no team of the employee

    response = client.get(reverse("tasks:attachment", args=[task.pk, attachment.pk]))

    assert response.status_code == 404 and b"confidential" not in response.content
