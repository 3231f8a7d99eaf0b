"""IMAP polling: unseen messages of a plain mailbox become tasks through the same service as the
webhooks, are marked seen only once stored, and a second poll creates nothing new."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django_q.models import OrmQ

from aiworkforce.audit import Actor
from mailboxes.imap import mailbox_poll, mailboxes_poll_due
from mailboxes.models import InboundMail, InboundStatus, Mailbox
from mailboxes.services import mailbox_set_imap
from tasks.models import Task
from tests.mailboxes import esp
from tests.mailboxes.imap_server import FakeIMAPServer

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"
PASSWORD = "imap-pass-9"  # the fake server's, for these tests only


@pytest.fixture
def imap(tmp_path, settings):
    with FakeIMAPServer(tmp_path, username="clerk", password=PASSWORD) as server:
        settings.MAIL_IMAP_CA_FILE = str(server.cert_path)
        settings.MAIL_IMAP_TIMEOUT_SECONDS = 5
        yield server


def _connect(mailbox: Mailbox, imap: FakeIMAPServer, password: str = PASSWORD) -> None:
    mailbox_set_imap(
        mailbox=mailbox,
        host="127.0.0.1",
        port=imap.port,
        username="clerk",
        password=password,
        actor=Actor.system("tests"),
    )


def test_unseen_messages_become_tasks_and_are_marked_seen(mailbox, imap):
    _connect(mailbox, imap)
    assert mailbox.imap_password_encrypted and "imap-pass-9" not in mailbox.imap_password_encrypted
    first, first_id = esp.raw_mime(
        sender="ana@customer.example", to=TO, subject="By IMAP", text="Plain mailbox."
    )
    second, _ = esp.raw_mime(sender="eve@spam.example", to=TO, subject="Spam", text="x")
    imap.add(first)
    imap.add(second)

    assert mailbox_poll(mailbox_id=mailbox.pk) == "2 stored"
    assert imap.seen == {1, 2}
    run = InboundMail.objects.get(message_id=first_id)
    assert run.provider == "IMAP" and run.status == InboundStatus.RUN
    assert "Plain mailbox." in run.task.input
    assert InboundMail.objects.exclude(pk=run.pk).get().status == InboundStatus.HELD

    # The same message again (another client marked it unseen): found, not run twice.
    imap.seen.clear()
    assert mailbox_poll(mailbox_id=mailbox.pk) == "2 stored"
    assert Task.objects.count() == 1 and InboundMail.objects.count() == 2


def test_a_wrong_password_is_recorded_on_the_mailbox_and_nothing_is_fetched(mailbox, imap):
    _connect(mailbox, imap, password="wrong")
    imap.add(esp.raw_mime(sender="ana@customer.example", to=TO, subject="s", text="t")[0])
    assert mailbox_poll(mailbox_id=mailbox.pk).startswith("failed")
    mailbox.refresh_from_db()
    assert "bad credentials" in mailbox.imap_error
    assert imap.seen == set() and not InboundMail.objects.exists()


def test_an_untrusted_certificate_is_refused(mailbox, imap, settings):
    settings.MAIL_IMAP_CA_FILE = ""  # the system's CAs do not know the test certificate
    _connect(mailbox, imap)
    imap.add(esp.raw_mime(sender="ana@customer.example", to=TO, subject="s", text="t")[0])
    assert "CERTIFICATE_VERIFY_FAILED" in mailbox_poll(mailbox_id=mailbox.pk)
    assert not InboundMail.objects.exists()


def test_run_due_queues_one_poll_per_due_mailbox(mailbox, imap):
    assert mailboxes_poll_due() == 0  # no IMAP account yet
    _connect(mailbox, imap)
    assert mailboxes_poll_due() == 1
    assert mailboxes_poll_due() == 0  # polled a moment ago: not again yet
    assert [job.func() for job in OrmQ.objects.all()] == ["mailboxes.jobs.poll_mailbox"]


def test_a_message_that_cannot_be_stored_is_skipped_and_never_blocks_the_others(
    mailbox, imap, monkeypatch
):
    from mailboxes import imap as imap_module

    real = imap_module.inbound_mail_receive

    def receive(*, message, **kwargs):
        if message["Subject"] == "Poison":
            raise RuntimeError("cannot store this one")
        return real(message=message, **kwargs)

    monkeypatch.setattr(imap_module, "inbound_mail_receive", receive)
    _connect(mailbox, imap)
    poison = imap.add(
        esp.raw_mime(sender="ana@customer.example", to=TO, subject="Poison", text="x")[0]
    )
    good = imap.add(esp.raw_mime(sender="ana@customer.example", to=TO, subject="Fine", text="y")[0])

    assert mailbox_poll(mailbox_id=mailbox.pk) == "1 stored, 1 failed"
    assert imap.seen == {good}  # the bad one stays unseen, the next one is stored
    mailbox.refresh_from_db()
    assert f"message UID {poison}: RuntimeError: cannot store this one" in mailbox.imap_error
    assert mailbox.imap_failed_uids == {str(poison): 1}
    assert InboundMail.objects.get().subject == "Fine"

    for _ in range(imap_module.MAX_FAILURES - 1):
        mailbox_poll(mailbox_id=mailbox.pk)
    mailbox.refresh_from_db()
    assert mailbox.imap_failed_uids == {str(poison): imap_module.MAX_FAILURES}
    assert "skipped from now on" in mailbox.imap_error
    later = imap.add(
        esp.raw_mime(sender="ana@customer.example", to=TO, subject="Later", text="z")[0]
    )
    assert mailbox_poll(mailbox_id=mailbox.pk) == "1 stored"  # the poison one is not tried
    assert imap.seen == {good, later} and poison not in imap.seen


def test_changing_the_imap_host_port_or_user_needs_the_password_again(mailbox, imap):
    _connect(mailbox, imap)
    encrypted = mailbox.imap_password_encrypted
    for change in ({"host": "imap.attacker.test"}, {"port": 1993}, {"username": "root"}):
        account = {"host": "127.0.0.1", "port": imap.port, "username": "clerk", **change}
        with pytest.raises(ValidationError, match="Give the password again"):
            mailbox_set_imap(mailbox=mailbox, password=None, actor=Actor.system("t"), **account)
        mailbox.refresh_from_db()
        assert mailbox.imap_host == "127.0.0.1" and mailbox.imap_password_encrypted == encrypted
    # The same account without a password keeps it; a new host with one replaces it.
    mailbox_set_imap(
        mailbox=mailbox,
        host="127.0.0.1",
        port=imap.port,
        username="clerk",
        password=None,
        folder="Archive",
        actor=Actor.system("t"),
    )
    assert mailbox.imap_password_encrypted == encrypted and mailbox.imap_folder == "Archive"
    mailbox_set_imap(
        mailbox=mailbox,
        host="imap.other.test",
        username="clerk",
        password="new-pass",
        actor=Actor.system("t"),
    )
    assert mailbox.imap_password_encrypted not in ("", encrypted)
