"""The cluster supervisor, with real django-q2 clusters: django-q2 freezes for good when the
worker holding its queue's lock is killed (upstream issue 23), the supervisor restarts it and
the work goes on, SIGTERM stops even a frozen cluster within the grace, and a killed worker's
task is taken over within 30 s and resumes from its steps."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from aiworkforce.models import AuditEntry
from employees.models import ToolPolicy
from tasks.beacon import cluster_worker_pids
from tasks.models import Run, Step, StepKind, Task, TaskStatus
from tests.aiworkforce.helpers import clean_env
from tests.factories import EmployeeFactory, ToolGrantFactory, assigned_task
from tests.fakes.cluster import Cluster
from tests.fakes.cluster import database_url_for_workers as _test_database_url
from tests.fakes.openai_server import delay, dynamic, reply
from tests.fakes.smtp_server import FakeSMTPServer

pytestmark = pytest.mark.django_db(transaction=True)

# The system call a process blocked reading a pipe is in (/proc/PID/syscall).
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(platform.machine())


@pytest.fixture
def env(model_server):
    return clean_env(
        DATABASE_URL=_test_database_url(),
        OPENAI_API_KEY="sk-test-not-a-real-key",
        OPENAI_BASE_URL=model_server.base_url,
        LLM_MAX_RETRIES="0",
        Q_WORKERS="2",
        Q_TIMEOUT="60",
        Q_RETRY="90",
    )


def _wait(condition, what: str, timeout: float, cluster: Cluster | None = None) -> float:
    """Wait for `condition`; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    output = "".join(cluster.output[-60:]) if cluster else ""
    tasks = list(Task.objects.values_list("pk", "status", "status_reason", "lease_owner"))
    raise AssertionError(f"timed out waiting for {what}; tasks: {tasks}\n{output}")


def _reading(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] == READ_SYSCALL
    except (OSError, IndexError):
        return False


def _freeze(cluster: Cluster, state_dir: Path) -> list[int]:
    """SIGKILL the idle worker that holds the task queue's lock: the one blocked reading the
    queue's pipe while the others wait for the lock. Returns the killed pids.

    (Where /proc does not say which one that is, every worker is killed at once: one of them
    held the lock all the same.)"""
    _wait(lambda: len(cluster_worker_pids(state_dir)) == 2, "two workers", 30, cluster)
    pids = cluster_worker_pids(state_dir)
    if READ_SYSCALL is not None:
        _wait(lambda: any(_reading(pid) for pid in pids), "an idle worker reading", 10, cluster)
        holder = [pid for pid in pids if _reading(pid)]
        assert len(holder) == 1, holder  # one holds the lock, the other waits for it
        pids = holder
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # django-q2's guard replaces the dead worker(s): the cluster looks whole again.
    _wait(
        lambda: len(set(cluster_worker_pids(state_dir)) - set(pids)) == 2,
        "the killed worker's replacement",
        15,
        cluster,
    )
    return pids


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def test_without_a_supervisor_a_worker_killed_holding_the_queue_lock_freezes_the_cluster(
    model_server, env, tmp_path
):
    """django-q2 issue 23 as it is: if this starts to fail, upstream fixed it."""
    model_server.enqueue(reply("Done."))
    # django-q2's cluster as qcluster runs it, only reporting its workers to tmp_path.
    cluster = Cluster(env, command=("run_cluster", "--child", str(tmp_path)))
    try:
        _freeze(cluster, tmp_path)
        task = assigned_task(EmployeeFactory(handle="frozen"), "Anyone there?")
        time.sleep(8)
        task.refresh_from_db()
        assert task.status == TaskStatus.QUEUED and model_server.calls == 0
        # Nor does SIGTERM stop it: every worker waits on the lock for ever.
        cluster.process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            cluster.process.wait(timeout=5)
    finally:
        cluster.kill()


def test_the_supervisor_restarts_a_frozen_cluster_and_the_work_goes_on(model_server, env, tmp_path):
    model_server.enqueue(reply("Done."))
    cluster = Cluster(
        env, command=("run_cluster", "--state-dir", str(tmp_path), "--stall-seconds", "4")
    )
    try:
        killed = _freeze(cluster, tmp_path)
        task = assigned_task(EmployeeFactory(handle="healed"), "Anyone there?")
        # A stall of 4 s, a probe of 5 s, then a new cluster starts (a few seconds on a busy
        # machine) and takes the task's run again.
        took = _wait(
            lambda: Task.objects.get(pk=task.pk).status == TaskStatus.DONE,
            "the task to finish",
            45,
            cluster,
        )
        print(f"healed after {took:.1f} s")
        assert took > 4  # it did wait for the stall to be noticed
        assert model_server.calls == 1
        (restart,) = AuditEntry.objects.filter(action="cluster.restarted")
        assert "no worker ran a job" in restart.data["reason"]
        workers = cluster_worker_pids(tmp_path)
        assert len(workers) == 2 and not set(workers) & set(killed)
        processes = _tree(cluster.process.pid)
        started = time.monotonic()
        cluster.process.send_signal(signal.SIGTERM)
        cluster.process.wait(timeout=15)
        assert time.monotonic() - started < 10
        assert not [p for p in processes if p.is_running() and p.status() != "zombie"]
    finally:
        cluster.stop()


def test_sigterm_stops_a_frozen_cluster_within_the_grace(model_server, env, tmp_path):
    cluster = Cluster(
        env,
        command=(
            "run_cluster",
            "--state-dir",
            str(tmp_path),
            "--stall-seconds",
            "600",
            "--stop-grace",
            "2",
        ),
    )
    try:
        _freeze(cluster, tmp_path)
        processes = _tree(cluster.process.pid)
        assert len(processes) >= 6  # supervisor, cluster, sentinel, 2 workers, pusher, monitor
        started = time.monotonic()
        cluster.process.send_signal(signal.SIGTERM)
        cluster.process.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert not [p for p in processes if p.is_running() and p.status() != "zombie"]
    finally:
        cluster.stop()


def test_a_killed_workers_task_is_taken_over_within_30_s_and_resumes_from_its_steps(
    model_server, env, tmp_path
):
    """With the default lease (TASK_LEASE_SECONDS, renewed by the heartbeat)."""
    calls = {"n": 0}

    def script(body):
        calls["n"] += 1
        if not any(message["role"] == "tool" for message in body["messages"]):
            return reply(
                tool_calls=[
                    ("send_email", {"to": ["ops@example.com"], "subject": "Hi", "body": "."})
                ]
            )
        if calls["n"] == 2:
            return delay(120, reply("never seen"))  # the worker is killed during this call
        return reply("Sent.")

    model_server.enqueue(dynamic(script))
    employee = EmployeeFactory(handle="mailer")
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.AUTO,
    )
    with FakeSMTPServer() as smtp:
        env = {
            **env,
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
        }
        cluster = Cluster(env, command=("run_cluster", "--state-dir", str(tmp_path)))
        try:
            task = assigned_task(employee, "Send the report")
            _wait(lambda: calls["n"] == 2, "the second model call", 30, cluster)
            run = Run.objects.get(task=task)
            os.kill(int(run.worker.split(":")[1]), signal.SIGKILL)
            taken_over = _wait(
                lambda: Run.objects.filter(task=task, number=2).exists(),
                "another worker to take the task",
                40,
                cluster,
            )
            print(f"taken over after {taken_over:.1f} s")
            assert taken_over < 30
            _wait(
                lambda: Task.objects.get(pk=task.pk).status == TaskStatus.DONE,
                "the task to finish",
                20,
                cluster,
            )
            _wait(lambda: len(smtp.received) == 1, "the email", 20, cluster)
        finally:
            cluster.stop()
    assert Task.objects.get(pk=task.pk).result == "Sent."
    emails = Step.objects.filter(task=task, kind=StepKind.TOOL_CALL, payload__name="send_email")
    assert emails.count() == 1  # recorded once, never asked for or sent again
    assert calls["n"] == 3 and len(smtp.received) == 1
    assert list(
        Run.objects.filter(task=task).order_by("number").values_list("status", flat=True)
    ) == [
        "lost",
        "finished",
    ]
