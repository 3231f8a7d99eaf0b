"""Supervising the worker cluster: restart it when it stalls, stop it within a bounded time.

django-q2's workers take their jobs from one shared multiprocessing queue. A worker killed
while it holds that queue's lock (the idle worker next in line, killed by the OOM killer or a
deploy) leaves every other worker, reincarnated ones included, waiting on the lock for ever,
and a SIGTERM then never completes (django-q2 issue 23; issue 339 is the same on the result
queue). Leases expire and runs are queued again, but only to the same frozen cluster.

The supervisor (`manage.py run_cluster`) runs the cluster as a child in its own process group
and, every two seconds:
- notices a stall: work has waited CLUSTER_STALL_SECONDS while none of the cluster's workers ran
  a job (tasks.beacon); it then queues a probe job and the waiting tasks' runs again, and if no
  worker starts a job within PROBE_SECONDS it kills the cluster's process group and starts a
  new one (audited as `cluster.restarted`), queueing the runs the dead one had taken;
- takes expired leases back: a run is queued for every running task whose worker stopped
  renewing its lease (tasks.leases), so a killed worker's task is resumed within seconds of its
  lease running out, not at the next `run_due`;
- on SIGTERM or SIGINT stops the cluster: SIGTERM to its main process (workers finish their
  job), then after the grace SIGKILL to its whole process group. A cluster whose supervisor
  dies kills itself (its main process watches its parent).

A supervisor outside the cluster rather than a patched django-q2: the freeze is in how
multiprocessing queues share their locks, so a fix upstream means replacing both queues (the
issue has been open since 2019 in django-q and 2022 in django-q2, and a fork would be ours to
keep), while a watchdog from outside also catches stalls nobody has found yet. Nothing is lost
by killing a cluster: every step is committed before the next, and runs resume from them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone
from django_q.cluster import Cluster
from django_q.models import OrmQ
from django_q.tasks import async_task

from aiworkforce.audit import Actor, audit_log
from tasks.beacon import beacon_install, beacon_progress_at, beacon_reset, cluster_worker_pids
from tasks.claims import expired_leases
from tasks.models import Task, TaskStatus
from tasks.services import ACTING_STATUSES, enqueue_run

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# How long a healthy cluster may take to start the probe job (it polls its broker every 0.2 s).
PROBE_SECONDS = 5.0
# Leases and stalls are looked at this often (a few small queries).
CHECK_SECONDS = 2.0
# At most this many waiting runs are queued again at once (a dead cluster held at most its
# queue_limit + bulk of them).
REQUEUE_LIMIT = 200
# A cluster with no worker up this long after it was started is started again.
START_SECONDS = 60.0
# A cluster that exits within this long after starting is restarted with a growing pause.
CRASH_WINDOW_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 30.0


def work_waiting(*, older_than: float) -> bool:
    """Has work waited `older_than` seconds for a worker: a queued task, a task whose lease ran
    out, or (with the database broker) a job nobody took?"""
    now = timezone.now()
    since = now - timedelta(seconds=older_than)
    if _waiting_tasks(before=since).exists():
        return True
    if Task.objects.filter(status=TaskStatus.RUNNING, lease_expires_at__lt=since).exists():
        return True
    return "orm" in settings.Q_CLUSTER and OrmQ.objects.filter(lock__lt=since).exists()


def _waiting_tasks(*, before):
    now = timezone.now()
    return Task.objects.filter(
        Q(due_at__isnull=True) | Q(due_at__lte=now),
        status=TaskStatus.QUEUED,
        updated_at__lt=before,
        employee__status__in=ACTING_STATUSES,
    )


def _requeue_waiting(*, before) -> int:
    """Queue again the runs of tasks queued before `before` (their job may have been inside a
    dead cluster); a second job for a task is harmless, its claim is a compare-and-swap."""
    ids = list(
        _waiting_tasks(before=before)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:REQUEUE_LIMIT]
    )
    for task_id in ids:
        enqueue_run(task_id)
    return len(ids)


class Supervisor:
    """One supervised cluster, from start to stop; `run` returns when asked to stop."""

    def __init__(self, *, state_dir: Path, stall_seconds: float, stop_grace: float) -> None:
        self.state_dir = state_dir
        self.stall_seconds = stall_seconds
        self.stop_grace = stop_grace
        self.child: subprocess.Popen | None = None
        # Epoch seconds (comparable with the beacon's): when the cluster was started, when its
        # first worker was seen.
        self.started_at = self.ready_at = 0.0
        self.probe_at: float | None = None
        self.restarts = 0
        self.crashes = 0
        self.stopping = False
        self.next_check = 0.0
        # Task id -> when its run was queued for an expired lease (not again while it waits).
        self.reclaimed: dict[int, float] = {}

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop_requested)
        signal.signal(signal.SIGINT, self._stop_requested)
        self._start()
        try:
            while not self.stopping:
                time.sleep(POLL_SECONDS)
                if not self.stopping:
                    self._watch()
        finally:
            self.stop()

    def _stop_requested(self, signum, frame) -> None:
        self.stopping = True

    def _watch(self) -> None:
        code = self.child.poll()
        if code is not None:
            self._restart_exited(code)
            return
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + CHECK_SECONDS
        try:
            self._reclaim()
            reason = self._stalled()
            if reason:
                self.restart(reason)
        except Exception as exc:  # the database is away: the cluster cannot work either
            logger.warning("supervisor: %s", exc)
            connections.close_all()

    def _stalled(self) -> str | None:
        now = time.time()
        if not self.ready_at:
            # Quiet is counted from when its first worker is up: a slow start is no stall.
            if cluster_worker_pids(self.state_dir):
                self.ready_at = now
            elif now - self.started_at > START_SECONDS:
                return f"no worker started within {START_SECONDS:.0f} s"
            return None
        quiet = now - max(beacon_progress_at(self.state_dir), self.ready_at)
        if quiet < self.stall_seconds:
            self.probe_at = None
            return None
        if self.probe_at is None:
            if work_waiting(older_than=self.stall_seconds):
                # Maybe the cluster is fine and the work has no job (it was lost): a probe job
                # and the waiting runs queued again tell which.
                self.probe_at = now
                async_task("tasks.jobs.cluster_probe", task_name="supervisor probe")
                _requeue_waiting(before=timezone.now() - timedelta(seconds=self.stall_seconds))
            return None
        if now - self.probe_at < PROBE_SECONDS:
            return None
        if not work_waiting(older_than=self.stall_seconds):
            self.probe_at = None
            return None
        return (
            f"work waited while no worker ran a job for {quiet:.0f} s, and a probe job did "
            f"not start within {PROBE_SECONDS:.0f} s"
        )

    def _reclaim(self) -> None:
        """Queue a run for each task whose worker's lease ran out (once per stall period)."""
        now = time.monotonic()
        self.reclaimed = {
            task_id: at for task_id, at in self.reclaimed.items() if now - at < self.stall_seconds
        }
        for task_id in expired_leases(limit=REQUEUE_LIMIT):
            if task_id not in self.reclaimed:
                self.reclaimed[task_id] = now
                enqueue_run(task_id)

    def restart(self, reason: str) -> None:
        """Kill the cluster's process group (a stalled cluster ignores SIGTERM) and start anew."""
        self.restarts += 1
        logger.warning("supervisor: restarting the worker cluster: %s", reason)
        killed_at = timezone.now()
        self._kill()
        try:
            audit_log(
                action="cluster.restarted",
                actor=Actor.system("cluster supervisor"),
                data={"host": socket.gethostname(), "reason": reason, "restarts": self.restarts},
            )
        except Exception as exc:
            logger.warning("supervisor: restart not audited: %s", exc)
            connections.close_all()
        self._start()
        try:
            # The jobs the dead cluster had taken from the broker are gone with it.
            _requeue_waiting(before=killed_at)
        except Exception as exc:
            logger.warning("supervisor: waiting runs not queued again: %s", exc)
            connections.close_all()

    def _restart_exited(self, code: int) -> None:
        lived = time.time() - self.started_at
        self.crashes = self.crashes + 1 if lived < CRASH_WINDOW_SECONDS else 1
        pause = min(MAX_BACKOFF_SECONDS, 2 ** (self.crashes - 1))
        logger.warning(
            "supervisor: the worker cluster exited (code %s); starting it again in %s s",
            code,
            pause,
        )
        self._kill()  # whatever it left in its process group
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline and not self.stopping:
            time.sleep(0.1)
        if not self.stopping:
            self._start()

    def _start(self) -> None:
        beacon_reset(self.state_dir)
        self.child = subprocess.Popen(
            [
                sys.executable,
                str(Path(settings.BASE_DIR) / "manage.py"),
                "run_cluster",
                "--child",
                str(self.state_dir),
            ],
            start_new_session=True,  # its own process group, killed as one
        )
        self.started_at = time.time()
        self.ready_at = 0.0
        self.probe_at = None
        logger.info("supervisor: started the worker cluster (pid %s)", self.child.pid)

    def _kill(self) -> None:
        if self.child is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child.pid, signal.SIGKILL)
        self.child.wait()

    def stop(self) -> None:
        """SIGTERM to the cluster's main process; SIGKILL to its group after the grace."""
        if self.child is None:
            return
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "supervisor: the worker cluster did not stop within %s s; killing it",
                    self.stop_grace,
                )
        self._kill()  # also what a stopped main process may have left behind


def cluster_child(state_dir: Path) -> None:
    """The supervised cluster: django-q2's own (as `qcluster`), reporting its workers'
    progress to the state directory, and dying with its supervisor."""
    settings.SECRET_KEY  # noqa: B018 - as qcluster: signing needs it
    beacon_install(state_dir)
    supervisor = os.getppid()
    cluster = Cluster()
    cluster.start()
    while cluster.sentinel.is_alive():
        if os.getppid() != supervisor:  # it was killed: leave no workers behind
            os.killpg(os.getpgrp(), signal.SIGKILL)
        time.sleep(1)
