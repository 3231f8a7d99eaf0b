"""What a worker cluster tells its supervisor, through files in a state directory.

- `progress`: its modification time is the last moment a worker of the cluster was running a
  job (touched when a job starts and ends, and every second while it runs);
- `workers/<pid>`: one file per worker process the cluster started.

A cluster whose workers all wait on a lock that a dead worker held (django-q2 issues 23, 339)
runs no job, so its `progress` stops moving while work waits: that is what the supervisor
(tasks.supervisor) watches. Files, not the database: the signal must not depend on the
cluster's own health, and costs nothing per job.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import psutil
from django_q.signals import post_execute_in_worker, post_spawn, pre_execute

PROGRESS = "progress"
WORKERS = "workers"
TICK_SECONDS = 1.0


def beacon_reset(state_dir: Path) -> None:
    """Before a cluster starts: no workers yet, and no progress newer than now."""
    workers = state_dir / WORKERS
    workers.mkdir(parents=True, exist_ok=True)
    for path in workers.iterdir():
        path.unlink(missing_ok=True)
    (state_dir / PROGRESS).touch()


def beacon_progress_at(state_dir: Path) -> float:
    """When a worker last ran a job (epoch seconds; 0 if never)."""
    try:
        return (state_dir / PROGRESS).stat().st_mtime
    except FileNotFoundError:
        return 0.0


def cluster_worker_pids(state_dir: Path) -> list[int]:
    """The worker processes of the cluster that are alive now."""
    pids = []
    for path in (state_dir / WORKERS).glob("*"):
        try:
            if psutil.Process(int(path.name)).status() != psutil.STATUS_ZOMBIE:
                pids.append(int(path.name))
        except (psutil.NoSuchProcess, ValueError):
            continue
    return sorted(pids)


class _WorkerBeacon:
    """Installed in the cluster's main process; each worker forked from it reports itself."""

    def __init__(self, state_dir: Path) -> None:
        self.progress = state_dir / PROGRESS
        self.workers = state_dir / WORKERS
        self.busy = False
        self.ticker_pid = 0

    # A beacon that cannot be written (the directory was removed) must never stop a worker.

    def touch(self) -> None:
        with contextlib.suppress(OSError):
            self.progress.touch()

    def spawned(self, **kwargs) -> None:
        with contextlib.suppress(OSError):
            (self.workers / str(os.getpid())).touch()

    def job_started(self, **kwargs) -> None:
        self.busy = True
        self.touch()
        if self.ticker_pid != os.getpid():  # one ticker per worker process
            self.ticker_pid = os.getpid()
            threading.Thread(target=self._tick, name="beacon", daemon=True).start()

    def job_finished(self, **kwargs) -> None:
        self.busy = False
        self.touch()

    def _tick(self) -> None:
        # A long job (a slow model call) is progress too, for as long as django-q2 lets it
        # run (its guard ends a job at Q_TIMEOUT).
        while True:
            time.sleep(TICK_SECONDS)
            if self.busy:
                self.touch()


def beacon_install(state_dir: Path) -> None:
    """Connect the worker signals of django-q2 to the state directory (before the cluster
    starts: its workers are forked from this process and inherit the receivers)."""
    (state_dir / WORKERS).mkdir(parents=True, exist_ok=True)
    beacon = _WorkerBeacon(state_dir)
    post_spawn.connect(beacon.spawned, weak=False, dispatch_uid="aiw-beacon-spawned")
    pre_execute.connect(beacon.job_started, weak=False, dispatch_uid="aiw-beacon-started")
    post_execute_in_worker.connect(
        beacon.job_finished, weak=False, dispatch_uid="aiw-beacon-finished"
    )
