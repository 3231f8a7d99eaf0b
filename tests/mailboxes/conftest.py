"""Fixtures for mail: anymail's webhook secrets, an employee with a mailbox, an SMTP peer."""

from __future__ import annotations

import socket

import pytest
from aiosmtpd.controller import Controller

from aiworkforce.audit import Actor
from employees.models import EmployeeStatus
from mailboxes.services import mailbox_set
from tests.factories import EmployeeFactory
from tests.mailboxes.esp import DOMAIN, MAILGUN_SIGNING_KEY, WEBHOOK_SECRET


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": [WEBHOOK_SECRET],
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY,
    }
    settings.MAIL_UNKNOWN_SENDERS = "hold"
    settings.DEFAULT_FROM_EMAIL = "AI Workforce <workforce@acme.test>"
    return settings


@pytest.fixture
def mailbox(db):
    """An active employee who runs mail from customer.example and from one partner address."""
    employee = EmployeeFactory(
        handle="inbox-clerk", name="Inbox Clerk", status=EmployeeStatus.ACTIVE
    )
    return mailbox_set(
        employee=employee,
        address=f"Clerk@{DOMAIN}",
        allowed_senders=["customer.example", "boss@partner.example"],
        actor=Actor.system("tests"),
    )


class _Recorder:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_peer(settings):
    """A real SMTP server (aiosmtpd) on a free port, and Django's SMTP backend pointed at it."""
    recorder = _Recorder()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    yield recorder
    controller.stop()
