"""Benchmark: inbound mail, 1,000 webhook deliveries → tasks; p95 and mean per delivery.

    ./workforce bench inbound_mail   (or)
    .venv/bin/python benchmarks/inbound_mail.py [--deliveries 1000]

In-process with Django's test client (server time only: no network), DEBUG off, on a database
of its own on the embedded server (or DATABASE_URL; AIW_VAR_DIR moves the embedded server).
Each delivery is a whole request through anymail's view and our service: verified (Mailgun's
HMAC signature and basic auth, or Postmark's basic auth), parsed, the InboundMail row claimed,
the task written with its audit entries and dispatched (a django-q2 job row on commit). The
deliveries alternate Mailgun (fully parsed form) and Postmark (JSON), with a 4 kB text body;
every tenth carries a 50 kB binary attachment, every fifth is a reply to an earlier one (the
thread lookup), and every twentieth is a redelivery of the one before (must create nothing).
Prints the mean and p95 per delivery, overall and per kind; fails if the task count is off.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.databases import bench_database_url  # noqa: E402 (needs the sys.path above)

DATABASE = "aiworkforce_bench_inbound_mail"
SECRET = "bench:" + secrets.token_hex(8)
SIGNING_KEY = "bench-signing-" + secrets.token_hex(8)
ADDRESS = "bench-clerk@mail.bench.test"
SENDER = "ana@customer.example"
BODY = ("Hello, this is a line of an ordinary customer mail about an order. " * 60)[:4000]


def setup_django() -> None:
    """Deployed settings (DEBUG off) on a database of our own."""
    import django

    os.environ["OPENAI_API_KEY"] = ""
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["SECURE_SSL_REDIRECT"] = "false"
    os.environ["STATIC_ROOT"] = tempfile.mkdtemp(prefix="aiworkforce-bench-static-")
    os.environ["ANYMAIL_WEBHOOK_SECRET"] = SECRET
    os.environ["ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY"] = SIGNING_KEY
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = bench_database_url(DATABASE)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _mailbox():
    from aiworkforce.audit import Actor
    from employees.models import Employee, EmployeeStatus, Team
    from mailboxes.services import mailbox_set

    team, _ = Team.objects.get_or_create(name="Inbound mail benchmark")
    employee, _ = Employee.objects.get_or_create(
        handle="bench-mail-clerk",
        defaults={
            "name": "Bench Mail Clerk",
            "team": team,
            "role_title": "Clerk",
            "job_description": "Answers mail.",
            "status": EmployeeStatus.ACTIVE,
        },
    )
    return mailbox_set(
        employee=employee,
        address=ADDRESS,
        allowed_senders=["customer.example"],
        actor=Actor.system("benchmark"),
    )


def _auth() -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(SECRET.encode()).decode()}


def _mailgun(client, *, message_id: str, subject: str, headers: list, attachment: bytes | None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(
        SIGNING_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    data = {
        "recipient": ADDRESS,
        "sender": SENDER,
        "subject": subject,
        "body-plain": BODY,
        "message-headers": json.dumps(
            [
                ["From", SENDER],
                ["To", ADDRESS],
                ["Subject", subject],
                ["Message-Id", message_id],
                *headers,
            ]
        ),
        "timestamp": timestamp,
        "token": token,
        "signature": signature,
    }
    if attachment:
        data["attachment-count"] = "1"
        data["attachment-1"] = SimpleUploadedFile(
            "data.bin", attachment, "application/octet-stream"
        )
    return client.post("/mail/mailgun/inbound/", data, **_auth())


def _postmark(client, *, message_id: str, subject: str, headers: list, attachment: bytes | None):
    payload = {
        "FromFull": {"Email": SENDER, "Name": "Ana"},
        "ToFull": [{"Email": ADDRESS, "Name": ""}],
        "OriginalRecipient": ADDRESS,
        "Subject": subject,
        "MessageID": secrets.token_hex(16),
        "Date": "Mon, 2 Mar 2026 09:30:00 +0000",
        "TextBody": BODY,
        "Headers": [{"Name": "Message-ID", "Value": message_id}]
        + [{"Name": name, "Value": value} for name, value in headers],
        "Attachments": [
            {
                "Name": "data.bin",
                "Content": base64.b64encode(attachment).decode(),
                "ContentType": "application/octet-stream",
            }
        ]
        if attachment
        else [],
    }
    return client.post(
        "/mail/postmark/inbound/", json.dumps(payload), content_type="application/json", **_auth()
    )


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def run(deliveries: int) -> None:
    from django.test import Client

    from mailboxes.models import InboundMail
    from tasks.models import Task

    mailbox = _mailbox()
    client = Client()
    run_id = secrets.token_hex(4)
    tasks_before = Task.objects.filter(employee=mailbox.employee).count()
    attachment = os.urandom(50_000)
    timings: list[float] = []
    by_kind: dict[str, list[float]] = {}
    sent_ids: list[str] = []
    redeliveries = 0
    for n in range(deliveries):
        redelivery = n % 20 == 19
        if redelivery:
            message_id = sent_ids[-1]
            redeliveries += 1
        else:
            message_id = f"<bench-{run_id}-{n}@customer.example>"
            sent_ids.append(message_id)
        headers = []
        if n % 5 == 4 and len(sent_ids) > 1:
            headers = [["In-Reply-To", sent_ids[-2]], ["References", " ".join(sent_ids[-3:-1])]]
        send = _mailgun if n % 2 == 0 else _postmark
        started = time.perf_counter()
        response = send(
            client,
            message_id=message_id,
            subject=f"Order {n}",
            headers=headers,
            attachment=attachment if n % 10 == 0 else None,
        )
        timings.append((time.perf_counter() - started) * 1000)
        kind = f"{send.__name__.strip('_')}{' + 50 kB attachment' if n % 10 == 0 else ''}"
        by_kind.setdefault(kind, []).append(timings[-1])
        if response.status_code != 200:
            raise SystemExit(f"delivery {n}: {response.status_code} {response.content[:300]!r}")
    created = Task.objects.filter(employee=mailbox.employee).count() - tasks_before
    expected = deliveries - redeliveries
    linked = InboundMail.objects.filter(
        mailbox=mailbox, message_id__startswith=f"<bench-{run_id}-", replies_to__isnull=False
    ).count()
    p95 = _p95(timings)
    timings.sort()
    print(f"Inbound mail: {deliveries} webhook deliveries (Mailgun and Postmark, in turns)")
    print(f"  tasks created: {created} (expected {expected}; {redeliveries} redeliveries)")
    print(f"  replies linked to an earlier task: {linked}")
    print(
        f"  per delivery: mean {statistics.fmean(timings):.1f} ms, "
        f"p50 {statistics.median(timings):.1f} ms, p95 {p95:.1f} ms, max {timings[-1]:.1f} ms"
    )
    for kind, values in sorted(by_kind.items()):
        print(
            f"    {kind}: {len(values)}, mean {statistics.fmean(values):.1f} ms, "
            f"p95 {_p95(values):.1f} ms"
        )
    if created != expected:
        raise SystemExit("FAIL: a delivery created no task, or a redelivery created a second one")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    args = parser.parse_args(argv)
    setup_django()
    run(args.deliveries)


if __name__ == "__main__":
    main()
