"""The back office: who may run held mail, and a refused mailbox form shows its errors."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from mailboxes.models import InboundMail, InboundStatus, Mailbox
from tasks.models import Task
from tests.factories import EmployeeFactory, UserFactory
from tests.mailboxes import esp

pytestmark = pytest.mark.django_db

TO = f"clerk@{esp.DOMAIN}"
CHANGELIST = "/admin/mailboxes/inboundmail/"


def _held(client) -> InboundMail:
    esp.mailgun_parsed(
        client,
        sender="new@prospect.example",
        recipient=TO,
        subject="Quote?",
        text="Run me.",
        message_id="<adm1@prospect.example>",
    )
    return InboundMail.objects.get()


def test_a_view_only_staff_user_can_neither_see_nor_post_the_run_action(client, mailbox):
    mail = _held(client)
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_inboundmail"))
    staff = Client()
    staff.force_login(viewer)
    page = staff.get(CHANGELIST)
    assert page.status_code == 200 and "Quote?" in page.text
    assert "run_held" not in page.text and "drop_held" not in page.text
    for action in ("run_held", "drop_held"):
        staff.post(CHANGELIST, {"action": action, "_selected_action": [mail.pk]})
    mail.refresh_from_db()
    assert mail.status == InboundStatus.HELD and mail.task is None
    assert not Task.objects.exists()


def test_a_staff_user_who_may_change_mail_can_run_it(client, mailbox):
    mail = _held(client)
    decider = UserFactory(is_staff=True)
    decider.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_inboundmail", "change_inboundmail"])
    )
    staff = Client()
    staff.force_login(decider)
    assert "run_held" in staff.get(CHANGELIST).text
    staff.post(CHANGELIST, {"action": "run_held", "_selected_action": [mail.pk]})
    mail.refresh_from_db()
    assert mail.status == InboundStatus.RUN and mail.task is not None


def _mailbox_form(employee, **fields) -> dict:
    return {
        "employee": employee.pk,
        "address": "desk@acme.test",
        "allowed_senders_text": "customer.example",
        "imap_host": "",
        "imap_port": 993,
        "imap_username": "",
        "imap_folder": "INBOX",
        "imap_password": "",
        **fields,
    }


def test_adding_a_mailbox_with_a_bad_allow_list_entry_shows_the_error_and_saves_nothing(
    admin_client,
):
    employee = EmployeeFactory(handle="desk")
    response = admin_client.post(
        "/admin/mailboxes/mailbox/add/",
        _mailbox_form(employee, allowed_senders_text="customer.example\nnot a domain"),
    )
    assert response.status_code == 200
    assert "neither an address nor a domain" in response.text
    assert not Mailbox.objects.exists()


def test_changing_the_imap_host_without_the_password_is_a_form_error(admin_client):
    employee = EmployeeFactory(handle="desk")
    form = _mailbox_form(
        employee, imap_host="imap.acme.test", imap_username="desk", imap_password="s3cret"
    )
    assert admin_client.post("/admin/mailboxes/mailbox/add/", form).status_code == 302
    mailbox = Mailbox.objects.get()
    encrypted = mailbox.imap_password_encrypted
    assert encrypted
    form.update(imap_host="imap.attacker.test", imap_password="")
    response = admin_client.post(f"/admin/mailboxes/mailbox/{mailbox.pk}/change/", form)
    assert response.status_code == 200
    assert "Give the password again" in response.text
    assert "changed successfully" not in response.text
    mailbox.refresh_from_db()
    assert mailbox.imap_host == "imap.acme.test" and mailbox.imap_password_encrypted == encrypted
