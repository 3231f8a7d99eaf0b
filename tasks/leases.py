"""Keeping running tasks' leases alive: one heartbeat thread per worker process.

Invariant: a lease is renewed only for the worker that holds it (the renewing statement is a
compare-and-swap on the task's status and lease_owner), and only while its run is within the
job's time limit (Q_TIMEOUT); so a worker that lost its task never extends someone else's
lease, and a dead or hung worker's task can be taken over once its lease runs out.

The loop renews its lease at every budget reservation too (tasks.budget); the heartbeat covers
what lies between: a long model call, a slow tool. All the leases of one process (many loops
on threads with TASKS_PER_WORKER) are renewed by one statement per beat. The first beat comes
one interval after a lease is taken, so a short run never waits for it or touches it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection, connections

logger = logging.getLogger(__name__)

# Rows locked by someone else (the loop writing a step, a claim) are skipped, never waited
# for: the holder's next beat comes long before its lease runs out.
_RENEW_SQL = """
UPDATE tasks_task t SET lease_expires_at = now() + make_interval(secs => %s)
FROM (
    SELECT mine.id FROM tasks_task mine
    JOIN unnest(%s::bigint[], %s::text[]) AS held(id, owner)
        ON held.id = mine.id AND held.owner = mine.lease_owner
    WHERE mine.status = 'running'
    FOR UPDATE OF mine SKIP LOCKED
) renewable
WHERE t.id = renewable.id
RETURNING t.id
"""


def renew_interval() -> float:
    """Seconds between beats: TASK_LEASE_RENEW_SECONDS, and at least three beats a lease."""
    return min(float(settings.TASK_LEASE_RENEW_SECONDS), settings.TASK_LEASE_SECONDS / 3)


class _Heartbeat:
    """The leases this process's loops hold, and the thread that renews them."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        # (task id, lease owner) -> monotonic time after which it is no longer renewed.
        self.held: dict[tuple[int, str], float] = {}
        self.thread: threading.Thread | None = None

    def hold(self, task_id: int, worker: str) -> None:
        with self.lock:
            self.held[(task_id, worker)] = time.monotonic() + settings.Q_CLUSTER["timeout"]
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._beat_forever, name="lease-heartbeat", daemon=True
                )
                self.thread.start()

    def release(self, task_id: int, worker: str) -> None:
        with self.lock:
            self.held.pop((task_id, worker), None)

    def renew(self) -> set[int]:
        """One beat: renew every lease still held and within its time limit."""
        now = time.monotonic()
        with self.lock:
            due = [key for key, until in self.held.items() if until > now]
        if not due:
            return set()
        with connection.cursor() as cursor:
            cursor.execute(
                _RENEW_SQL,
                [
                    settings.TASK_LEASE_SECONDS,
                    [task_id for task_id, _ in due],
                    [worker for _, worker in due],
                ],
            )
            return {row[0] for row in cursor.fetchall()}

    def _beat_forever(self) -> None:
        last = time.monotonic()
        while True:
            # In short naps, so that the interval is read again (a test may shorten it).
            time.sleep(min(0.5, max(0.0, last + renew_interval() - time.monotonic())))
            if time.monotonic() < last + renew_interval():
                continue
            last = time.monotonic()
            try:
                self.renew()
            except Exception as exc:  # the database is away: the next beat tries again
                logger.warning("lease heartbeat failed: %s", exc)
            finally:
                # This thread's own connection: never held while it sleeps (a pool slot, and
                # a test database that must be dropped at the end).
                connections.close_all()


_heartbeat = _Heartbeat()


def _current() -> _Heartbeat:
    """The heartbeat of this process (a forked child starts its own, with nothing held)."""
    global _heartbeat
    if _heartbeat.pid != os.getpid():
        _heartbeat = _Heartbeat()
    return _heartbeat


@contextmanager
def lease_heartbeat(*, task_id: int, worker: str) -> Iterator[None]:
    """Renew `worker`'s lease of the task while the block runs (for at most Q_TIMEOUT)."""
    heartbeat = _current()
    heartbeat.hold(task_id, worker)
    try:
        yield
    finally:
        heartbeat.release(task_id, worker)


def leases_renew() -> set[int]:
    """Renew this process's held leases now (the heartbeat's beat); returns the tasks renewed."""
    return _current().renew()
