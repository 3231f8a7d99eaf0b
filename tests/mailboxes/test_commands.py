"""mailbox_set: an operator gives an employee a mailbox from the command line."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from aiworkforce.models import AuditEntry
from mailboxes.models import Mailbox
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


def test_mailbox_set_gives_a_mailbox_and_keeps_the_allow_list_when_not_given(capsys):
    employee = EmployeeFactory(handle="desk")
    call_command("mailbox_set", "@desk", "Desk@Acme.test", "--allow", "customer.example")
    mailbox = Mailbox.objects.get(employee=employee)
    assert mailbox.address == "desk@acme.test" and mailbox.allowed_senders == ["customer.example"]
    call_command("mailbox_set", "desk", "help@acme.test")
    mailbox.refresh_from_db()
    assert mailbox.address == "help@acme.test" and mailbox.allowed_senders == ["customer.example"]
    assert "receives mail at help@acme.test" in capsys.readouterr().out
    assert AuditEntry.objects.filter(action__startswith="mailbox.").count() == 2


def test_mailbox_set_refuses_a_taken_address_or_a_bad_sender_and_dry_run_changes_nothing():
    EmployeeFactory(handle="one")
    EmployeeFactory(handle="two")
    call_command("mailbox_set", "one", "one@acme.test")
    with pytest.raises(CommandError, match="already another employee"):
        call_command("mailbox_set", "two", "ONE@acme.test")
    with pytest.raises(CommandError, match="neither an address nor a domain"):
        call_command("mailbox_set", "two", "two@acme.test", "--allow", "not a domain")
    call_command("mailbox_set", "two", "two@acme.test", "--dry-run")
    assert not Mailbox.objects.filter(employee__handle="two").exists()
    with pytest.raises(CommandError, match="No employee"):
        call_command("mailbox_set", "nobody", "x@acme.test")
