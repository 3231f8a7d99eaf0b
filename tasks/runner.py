"""Running many agent loops at once in one worker process.

A loop spends nearly all its time waiting for the model, so one process runs several on
threads. With DATABASE_POOL_SIZE set they share pooled connections, each handing its own
back while it waits (tasks.loop), so hundreds of waiting loops hold a few connections.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from tasks.claims import expired_leases
from tasks.loop import run_task
from tasks.models import Task, TaskStatus


def _run_in_thread(task_id: int) -> str | None:
    try:
        return run_task(task_id)
    finally:
        connections.close_all()  # this thread's connection (back to the pool, if any)


def _runnable_ids(limit: int, exclude: set[int]) -> list[int]:
    """Tasks whose worker died first (their runs wait behind the queue), then queued ones."""
    now = timezone.now()
    abandoned = [pk for pk in expired_leases(limit=limit) if pk not in exclude]
    return abandoned + list(
        Task.objects.filter(status=TaskStatus.QUEUED)
        .filter(Q(due_at__isnull=True) | Q(due_at__lte=now))
        .exclude(pk__in=exclude)
        .order_by("-priority", "created_at")
        .values_list("pk", flat=True)[: limit - len(abandoned)]
    )


def run_tasks_concurrently(task_ids: list[int], *, concurrency: int) -> dict[int, str | None]:
    """Run the given tasks, at most `concurrency` at a time; return each one's outcome."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="loop") as pool:
        futures = {task_id: pool.submit(_run_in_thread, task_id) for task_id in task_ids}
        return {task_id: future.result() for task_id, future in futures.items()}


def run_with_companions(task_id: int, *, concurrency: int, time_budget: float | None = None) -> int:
    """Run one task and, while slots are free, other queued tasks next to it.

    Stops taking new tasks after `time_budget` seconds (by default half the worker timeout),
    so the django-q2 job ends well before its timeout. Returns how many tasks it ran.
    """
    time_budget = time_budget if time_budget is not None else settings.Q_CLUSTER["timeout"] / 2
    deadline = time.monotonic() + time_budget
    started: set[int] = set()
    running: set[Future] = set()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="loop") as pool:
        candidates = [task_id]
        while True:
            for candidate in candidates:
                started.add(candidate)
                running.add(pool.submit(_run_in_thread, candidate))
            if not running:
                return len(started)
            _, running = wait(running, return_when=FIRST_COMPLETED, timeout=1.0)
            free = concurrency - len(running)
            candidates = []
            if free > 0 and time.monotonic() < deadline:
                candidates = _runnable_ids(free, exclude=started)
