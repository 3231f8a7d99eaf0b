"""No mail loops: what looks automatic, bulk or ours is held, never run; and a flood of held
mail is one notice an hour per mailbox, not one per mail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from anymail.inbound import AnymailInboundMessage
from django.conf import settings as django_settings
from django.core import mail as django_mail
from django.utils import timezone
from django_q.models import Schedule

from aiworkforce.audit import Actor
from mailboxes.jobs import notify_held_mail
from mailboxes.models import InboundMail, InboundStatus
from mailboxes.notices import held_mail_digests, held_mail_notify
from mailboxes.services import inbound_mail_receive, mailbox_set
from tasks.models import Task
from tests.factories import EmployeeFactory, UserFactory
from tests.mailboxes import esp

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"


def _receive(mailbox, headers: str, n: int = 1) -> InboundMail:
    raw = f"{headers}\r\nTo: {TO}\r\nSubject: s{n}\r\nMessage-ID: <n{n}@x.ex>\r\n\r\nHi\r\n"
    message = AnymailInboundMessage.parse_raw_mime_bytes(raw.encode())
    [mail] = inbound_mail_receive(message=message, esp_name="IMAP", mailbox=mailbox)
    return mail


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("From: ana@customer.example\r\nPrecedence: bulk", "Precedence: bulk"),
        ("From: ana@customer.example\r\nPrecedence: list", "Precedence: list"),
        ("From: ana@customer.example\r\nList-Id: <news.customer.example>", "List-Id"),
        ("From: MAILER-DAEMON@customer.example", "a mail system"),
        ("From: postmaster@customer.example", "a mail system"),
        ("Subject-Only: yes", "no From address"),
    ],
)
def test_automatic_bulk_and_bounce_mail_is_held_never_run(mailbox, headers, reason):
    mail = _receive(mailbox, headers)
    assert mail.status == InboundStatus.HELD and reason in mail.reason
    assert not Task.objects.exists()


def test_mail_from_any_of_our_own_mailboxes_is_held(mailbox, settings):
    other = mailbox_set(
        employee=EmployeeFactory(handle="other"),
        address=f"other@{esp.DOMAIN}",
        allowed_senders=[],
        actor=Actor.system("tests"),
    )
    mailbox.allowed_senders = [esp.DOMAIN]  # even when its domain is allowed
    mailbox.save(update_fields=["allowed_senders"])
    settings.MAIL_UNKNOWN_SENDERS = "drop"
    mail = _receive(mailbox, f"From: Other <{other.address.upper()}>")
    assert mail.status == InboundStatus.HELD and "one of our own mailboxes" in mail.reason


def test_a_flood_of_held_mail_is_one_notice_an_hour_per_mailbox(mailbox):
    manager = UserFactory(email="boss@acme.test")
    mailbox.employee.manager = manager
    mailbox.employee.save(update_fields=["manager"])
    first = _receive(mailbox, "From: eve@spam.example", n=1)
    assert notify_held_mail(first.pk).startswith("1 mail(s) told to 1")
    [notice] = django_mail.outbox
    assert notice.to == ["boss@acme.test"] and notice.extra_headers["Auto-Submitted"]
    link = f"{django_settings.SITE_URL}/admin/mailboxes/inboundmail/{first.pk}/change/"
    assert f"  {link}\n" in notice.body

    flood = [_receive(mailbox, "From: eve@spam.example", n=n) for n in range(2, 30)]
    for held in flood:
        assert notify_held_mail(held.pk).startswith("told within the hour")
    assert len(django_mail.outbox) == 1
    assert held_mail_digests()["sent"] == 0  # still within the hour

    later = timezone.now() + timedelta(hours=1, minutes=1)
    assert held_mail_digests(now=later) == {"sent": 1, "failed": 0}
    digest = django_mail.outbox[1]
    assert "28 mail(s)" in digest.subject and "... and 8 more." in digest.body
    assert not InboundMail.objects.filter(managers_notified_at__isnull=True).exists()
    assert held_mail_notify(mailbox_id=mailbox.pk, now=later) == "nothing to tell"
    assert Schedule.objects.filter(name="held-mail-digest").count() == 1


def test_the_notice_links_absolutely_and_has_no_empty_why(mailbox, settings):
    settings.SITE_URL = "https://workforce.example.com"
    manager = UserFactory(email="boss@acme.test")
    mailbox.employee.manager = manager
    mailbox.employee.save(update_fields=["manager"])
    held = _receive(mailbox, "From: eve@spam.example\r\nPrecedence: bulk")
    InboundMail.objects.filter(pk=held.pk).update(reason="")
    notify_held_mail(held.pk)
    [notice] = django_mail.outbox
    link = f"https://workforce.example.com/admin/mailboxes/inboundmail/{held.pk}/change/"
    assert f"  {link}\n" in notice.body
    assert "Why:" not in notice.body
