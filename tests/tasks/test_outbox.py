"""The outbox delivers what it promised: lost jobs, outages and dead workers are swept up by
run_due, with backoff and a limit, and no attempt is ever made twice. Real SMTP on a socket."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from aiworkforce.models import AuditEntry
from employees.models import ToolPolicy
from tasks import outbox
from tasks.jobs import deliver_email, notify_outbox_failed
from tasks.loop import run_task
from tasks.models import OutboxEmail, OutboxStatus, TaskStatus
from tasks.outbox import outbox_claim, outbox_email_create, outbox_message_id, outbox_sweep
from tasks.services import task_create
from tests.aiworkforce.helpers import manage
from tests.factories import EmployeeFactory, MembershipFactory, ToolGrantFactory, UserFactory
from tests.fakes.openai_server import reply
from tests.fakes.smtp_server import FakeSMTPServer

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)


class SMTP:
    """The mail relay: up, down (nothing listens on its port) and back on the same port."""

    def __init__(self) -> None:
        self.server: FakeSMTPServer | None = FakeSMTPServer().__enter__()
        self.port = self.server.port
        self.received = []

    def stop(self) -> None:
        if self.server is not None:
            self.received += self.server.received
            self.server.__exit__(None, None, None)
            self.server = None

    def start(self) -> None:
        if self.server is None:
            self.server = FakeSMTPServer(port=self.port).__enter__()

    @property
    def messages(self) -> list:
        return self.received + (self.server.received if self.server else [])


@pytest.fixture
def smtp(settings):
    relay = SMTP()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": relay.port, "timeout": 5},
        }
    }
    settings.OUTBOX_MAX_ATTEMPTS = 5
    settings.OUTBOX_BACKOFF_SECONDS = 60
    settings.OUTBOX_SENDING_TIMEOUT_SECONDS = 300
    yield relay
    relay.stop()


@pytest.fixture
def mailer():
    return EmployeeFactory(name="Mailer", handle="mailer")


def _email(employee, n: int = 1) -> OutboxEmail:
    """An outbox row written in a transaction whose on-commit enqueue never runs (the test's):
    what a worker killed between the commit and the enqueue leaves behind."""
    task, _ = task_create(employee=employee, title=f"Report {n}", input="x", dispatch=False)
    return outbox_email_create(
        task=task,
        call_id=f"call_{n}",
        to=["ops@example.com"],
        subject=f"Report {n}",
        body="All good.",
    )


def _fresh(email: OutboxEmail) -> OutboxEmail:
    return OutboxEmail.objects.get(pk=email.pk)


def test_the_message_id_comes_from_the_tool_call(settings):
    settings.DEFAULT_FROM_EMAIL = "Acme Workforce <ai@acme.example>"
    assert outbox_message_id(task_id=7, call_id="call_Ab-9") == "<task7.call_Ab-9@acme.example>"
    odd = outbox_message_id(task_id=7, call_id="call 1/<x>@y")
    assert odd.startswith("<task7.call-1-x-y-") and odd.endswith("@acme.example>")
    assert " " not in odd and odd.count("@") == 1 and odd.count("<") == 1
    assert odd != outbox_message_id(task_id=7, call_id="call:1:x-y")
    assert len(outbox_message_id(task_id=7, call_id="c" * 500)) < 120


# (a)
def test_a_pending_email_whose_job_never_ran_is_sent_by_the_sweep(smtp, mailer):
    email = _email(mailer)
    assert not OrmQ.objects.exists()  # its job was never queued
    written = email.created_at

    # Within the first backoff the queued job would normally have sent it: left to it.
    assert outbox_sweep(now=written + timedelta(seconds=30))["sent"] == 0
    assert smtp.messages == []

    assert outbox_sweep(now=written + MINUTE)["sent"] == 1
    [received] = smtp.messages
    assert received.recipients == ["ops@example.com"]
    assert (
        received.message["Message-ID"]
        == email.message_id
        == f"<task{email.task_id}.call_1@localhost>"
    )
    email = _fresh(email)
    assert (email.status, email.attempts) == (OutboxStatus.SENT, 1)

    assert outbox_sweep(now=written + 10 * MINUTE) == {"sent": 0, "retry": 0, "failed": 0}
    assert deliver_email(email.pk) == "already handled"  # a late job sends nothing either
    assert len(smtp.messages) == 1


# (b) and the figures for the report
def test_an_smtp_outage_backs_off_and_the_mail_goes_out_once_when_the_server_is_back(smtp, mailer):
    email = _email(mailer)
    smtp.stop()  # down for five minutes from the first attempt

    assert deliver_email(email.pk) == "retry"  # the queued job's attempt: refused, not raised
    email = _fresh(email)
    t0 = email.last_attempt_at
    assert email.status == OutboxStatus.PENDING and "Connection refused" in email.error
    assert email.next_attempt_at == t0 + MINUTE

    attempts, delivered = [0], None
    for minute in range(1, 16):  # run_due once a minute, the clock shrunk
        now = t0 + minute * MINUTE
        if now >= t0 + 5 * MINUTE:
            smtp.start()
        counts = outbox_sweep(now=now)
        email = _fresh(email)
        if email.last_attempt_at == now:
            attempts.append(minute)
        if counts["sent"]:
            delivered = minute
    print(f"\nattempts at minutes {attempts}; delivered at minute {delivered}")

    assert attempts == [0, 1, 3, 7]  # backoff 1, 2, 4 minutes
    assert delivered == 7
    assert (email.status, email.attempts) == (OutboxStatus.SENT, 4)
    assert email.sent_at == t0 + 7 * MINUTE
    [received] = smtp.messages  # one SMTP transaction reached the receiver
    assert received.message["Message-ID"] == email.message_id


# (c)
def test_an_email_left_sending_by_a_dead_worker_is_sent_after_the_timeout(smtp, mailer):
    email = _email(mailer)
    t0 = timezone.now()
    assert outbox_claim(email=email, now=t0)  # the worker dies right after its claim

    assert outbox_sweep(now=t0 + timedelta(seconds=299))["sent"] == 0  # it might still send
    assert smtp.messages == []
    assert outbox_sweep(now=t0 + timedelta(seconds=300))["sent"] == 1
    email = _fresh(email)
    assert (email.status, email.attempts) == (OutboxStatus.SENT, 2)
    assert "Attempt 1 did not finish within 300 s" in email.error
    assert len(smtp.messages) == 1


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def test_a_retry_after_an_unknown_outcome_carries_the_same_message_id(smtp, mailer, monkeypatch):
    email = _email(mailer)

    def killed(**kwargs):
        raise WorkerKilled

    monkeypatch.setattr(outbox, "outbox_mark_sent", killed)
    with pytest.raises(WorkerKilled):  # the server took it; the worker died before recording it
        deliver_email(email.pk)
    monkeypatch.undo()
    assert _fresh(email).status == OutboxStatus.SENDING

    t0 = _fresh(email).last_attempt_at
    assert outbox_sweep(now=t0 + timedelta(seconds=300))["sent"] == 1
    first, second = smtp.messages
    assert first.message["Message-ID"] == second.message["Message-ID"] == email.message_id
    assert _fresh(email).status == OutboxStatus.SENT


# (d)
@pytest.fixture
def managed(mailer):
    team = mailer.team
    hank = UserFactory(username="hank", password=None)  # the employee's manager, not in the team
    mailer.manager = hank
    mailer.save(update_fields=["manager"])
    people = {"hank": hank}
    for name, role in [("mia", "manager"), ("dana", "approver"), ("vic", "viewer")]:
        people[name] = UserFactory(username=name, password=None)
        MembershipFactory(team=team, user=people[name], role=role)
    return people


def test_after_the_last_attempt_it_is_failed_the_managers_are_told_and_the_task_shows_it(
    smtp, mailer, managed, settings, client, django_capture_on_commit_callbacks
):
    settings.OUTBOX_MAX_ATTEMPTS = 3
    email = _email(mailer)
    smtp.stop()
    assert deliver_email(email.pk) == "retry"
    t0 = _fresh(email).last_attempt_at
    assert outbox_sweep(now=t0 + MINUTE)["retry"] == 1
    assert outbox_sweep(now=t0 + 2 * MINUTE) == {"sent": 0, "retry": 0, "failed": 0}  # backing off
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox_sweep(now=t0 + 3 * MINUTE)["failed"] == 1
    email = _fresh(email)
    assert (email.status, email.attempts) == (OutboxStatus.FAILED, 3)
    assert outbox_sweep(now=t0 + 10 * MINUTE)["sent"] == 0  # given up: never tried again
    entry = AuditEntry.objects.get(action="outbox.given_up")
    assert entry.subject_id == str(email.pk) and entry.data["attempts"] == 3
    jobs = [(job.task["func"], job.task["args"]) for job in OrmQ.objects.all()]
    assert jobs == [("tasks.jobs.notify_outbox_failed", (email.pk,))]

    smtp.start()
    assert notify_outbox_failed(email.pk) == "sent to 2"
    assert notify_outbox_failed(email.pk) == "already notified, or not failed"
    notices = smtp.messages
    assert sorted(r for n in notices for r in n.recipients) == [
        "hank@example.com",
        "mia@example.com",
    ]
    body = notices[0].message.get_payload(decode=True).decode()
    assert notices[0].message["Subject"] == (
        "[AI Workforce] An email from Mailer could not be delivered"
    )
    assert "after 3 attempts" in body and "Connection refused" in body
    assert f"/tasks/{email.task_id}/" in body

    client.force_login(managed["vic"])
    page = client.get(f"/tasks/{email.task_id}/").text
    assert "1 email could not be delivered" in page
    assert f'class="row outbox-email outbox-failed" data-outbox="{email.pk}"' in page
    assert "Given up: not delivered after 3 attempts" in page
    assert "Last error: ConnectionRefusedError" in page


def test_a_notice_the_server_refused_is_sent_by_a_later_sweep(smtp, mailer, managed, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    email = _email(mailer)
    smtp.stop()
    assert deliver_email(email.pk) == "failed"
    with pytest.raises(ConnectionRefusedError):
        notify_outbox_failed(email.pk)  # the relay is still down
    assert _fresh(email).managers_notified_at is None

    smtp.start()
    t0 = _fresh(email).last_attempt_at
    outbox_sweep(now=t0 + 30 * MINUTE)
    assert smtp.messages == []  # not yet due again
    outbox_sweep(now=t0 + 61 * MINUTE)
    assert len(smtp.messages) == 2 and _fresh(email).managers_notified_at is not None
    outbox_sweep(now=t0 + 200 * MINUTE)
    assert len(smtp.messages) == 2


def test_the_task_page_lists_each_email_with_status_and_attempts(smtp, mailer, client):
    email = _email(mailer)
    deliver_email(email.pk)
    client.force_login(UserFactory(is_superuser=True))
    page = client.get(f"/tasks/{email.task_id}/").text
    assert "Outgoing email" in page and 'data-outbox-status="sent"' in page
    assert "1 attempt ·" in page and "could not be delivered" not in page


# (e)
def test_a_mail_whose_enqueue_was_lost_after_commit_is_delivered_by_run_due(
    smtp, model_server, settings
):
    settings.OUTBOX_BACKOFF_SECONDS = 1
    employee = EmployeeFactory(handle="reporter")
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.AUTO,
    )
    model_server.enqueue(
        reply(
            tool_calls=[("send_email", {"to": ["ops@example.com"], "subject": "S", "body": "B"})]
        ),
        reply("Sent the report."),
    )
    task, _ = task_create(employee=employee, title="", input="Send the report", dispatch=False)
    assert run_task(task.pk) == TaskStatus.DONE
    email = OutboxEmail.objects.get(task=task)
    assert email.status == OutboxStatus.PENDING
    assert "tasks.jobs.deliver_email" not in [job.func() for job in OrmQ.objects.all()]

    time.sleep(1.1)  # the row's first backoff (OUTBOX_BACKOFF_SECONDS=1)
    call_command("run_due")  # as the cluster's schedule runs it every minute
    [received] = smtp.messages
    assert received.message["Subject"] == "S"
    assert received.message["Message-ID"].startswith(f"<task{task.pk}.")
    assert _fresh(email).status == OutboxStatus.SENT


# (f)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("racers", [("sweep", "sweep"), ("job", "sweep"), ("stale", "stale")])
def test_two_sweeps_or_a_job_and_a_sweep_never_send_one_email_twice(smtp, racers):
    employee = EmployeeFactory(handle="racer")
    emails = [_email(employee, n) for n in range(20)]
    now = timezone.now() + 2 * MINUTE
    if racers[0] == "stale":  # claimed by workers that died
        for email in emails:
            outbox_claim(email=email, now=now - 10 * MINUTE)
    start, errors = threading.Barrier(2), []

    def race(kind: str) -> None:
        try:
            start.wait()
            if kind == "job":  # the last five jobs were lost: only the sweep sends those
                for email in emails[:15]:
                    deliver_email(email.pk)
            else:
                outbox_sweep(now=now)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(kind,)) for kind in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    ids = [received.message["Message-ID"] for received in smtp.messages]
    assert sorted(ids) == sorted(email.message_id for email in emails)  # each exactly once
    expected_attempts = 2 if racers[0] == "stale" else 1
    assert set(OutboxEmail.objects.values_list("status", "attempts")) == {
        (OutboxStatus.SENT, expected_attempts)
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OUTBOX_MAX_ATTEMPTS": "0"}, "OUTBOX_MAX_ATTEMPTS must be at least 1"),
        (
            {
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_TIMEOUT": "30",
                "OUTBOX_SENDING_TIMEOUT_SECONDS": "30",
            },
            "OUTBOX_SENDING_TIMEOUT_SECONDS must be greater than EMAIL_TIMEOUT",
        ),
    ],
)
def test_malformed_outbox_settings_stop_startup(env, message):
    result = manage("check", env=env)
    assert result.returncode != 0 and message in result.stderr
