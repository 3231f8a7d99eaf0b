"""A burst of e-mailing tasks for worker clusters sharing a Redis queue: the model script, the
wait, and the exactly-once checks. Used by tests/tasks/test_redis_clusters.py and
benchmarks/clusters.py."""

from __future__ import annotations

import re
import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from tasks.models import OutboxEmail, OutboxStatus, Run, RunStatus, Step, Task, TaskStatus
from tasks.outbox import outbox_sweep
from tasks.services import task_create, tasks_dispatch_waiting, tasks_reclaim_expired
from tests.fakes.openai_server import delay, dynamic, reply

MARKER = re.compile(r"report (\d+)")


def script(model_server, latency: float) -> None:
    """Each task e-mails its own address once, then says it is done; every call is slow."""

    def answer(body):
        messages = body["messages"]
        if messages[-1]["role"] == "tool":
            return delay(latency, reply("Sent."))
        number = MARKER.search(str(messages)).group(1)
        call = {"to": [f"ops{number}@example.com"], "subject": f"Report {number}", "body": "ok"}
        return delay(latency, reply(tool_calls=[("send_email", call)]))

    model_server.enqueue(dynamic(answer))


def burst(employee, count: int, offset: int = 0) -> list[int]:
    return [
        task_create(employee=employee, title="", input=f"Send report {n}")[0].pk
        for n in range(offset, offset + count)
    ]


def wait_done(ids, clusters, timeout: float, recover: bool = False) -> float:
    """Seconds until every task is done and its e-mail sent. With `recover`, also do every 2 s what run_due does
    for work lost with a machine: expired leases taken back, and queued tasks whose job was
    lost dispatched again (run_due waits a minute for those, hence "a minute later")."""
    started = last_pass = time.monotonic()
    while time.monotonic() < started + timeout:
        # Done, and their e-mails delivered (a job of its own, after the task's step).
        done = Task.objects.filter(pk__in=ids, status=TaskStatus.DONE).count() == len(ids)
        if done and not _mail_on_its_way(ids):
            return time.monotonic() - started
        if recover and time.monotonic() - last_pass > 2:
            with transaction.atomic():
                tasks_reclaim_expired()
                tasks_dispatch_waiting(now=timezone.now() + timedelta(seconds=61))
            # E-mails whose delivery job was lost: sent by the sweep, as run_due does.
            outbox_sweep(now=timezone.now() + timedelta(minutes=2))
            last_pass = time.monotonic()
        time.sleep(0.1)
    states = list(Task.objects.filter(pk__in=ids).values_list("pk", "status", "lease_owner"))
    output = "".join(line for cluster in clusters for line in cluster.output[-30:])
    raise AssertionError(f"not all done in {timeout} s: {states}\n{output}")


def _mail_on_its_way(ids) -> bool:
    """An e-mail still to be sent. One left "sending" by a killed worker is never sent again
    by itself (it may have gone out): after 10 s it counts as settled, and `problems` says
    whether the SMTP server got it."""
    emails = OutboxEmail.objects.filter(task_id__in=ids)
    stuck = timezone.now() - timedelta(seconds=10)
    return (
        emails.filter(status=OutboxStatus.PENDING).exists()
        or emails.filter(status=OutboxStatus.SENDING, last_attempt_at__gt=stuck).exists()
    )


def problems(ids, smtp, numbers) -> list[str]:
    """What went wrong, in words: e-mails twice or missing, steps repeated or missing."""
    found = []
    sent = sorted(r for message in smtp.received for r in message.recipients)
    expected = sorted(f"ops{n}@example.com" for n in numbers)
    if sent != expected:
        twice = sorted({r for r in sent if sent.count(r) > 1})
        missing = sorted(set(expected) - set(sent))
        found.append(f"e-mails sent twice: {twice}, never sent: {missing}")
    if OutboxEmail.objects.filter(task_id__in=ids).count() != len(ids):
        found.append("not one outbox e-mail per task")
    for task_id in ids:
        seqs = list(
            Step.objects.filter(task_id=task_id).order_by("seq").values_list("seq", flat=True)
        )
        if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            found.append(f"task {task_id}: steps {seqs}")
    return found


def lost_runs(ids) -> int:
    return Run.objects.filter(task_id__in=ids, status=RunStatus.LOST).count()
