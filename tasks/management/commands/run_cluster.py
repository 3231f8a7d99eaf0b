"""Run the worker cluster under its supervisor: what `./workforce run` and production start.

`qcluster` alone can freeze for good when a worker dies holding its queue's lock; this command
runs it as a child, restarts it when it stalls, takes expired leases back every few seconds,
and on SIGTERM or SIGINT stops it within `--stop-grace` seconds (tasks.supervisor).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from tasks.supervisor import Supervisor, cluster_child

STOP_GRACE_SECONDS = 7.0  # under `up`'s own grace (10 s) for the whole command


class Command(BaseCommand):
    help = (
        "Run the django-q2 worker cluster under a supervisor that restarts it when it stalls "
        "and stops it within a bounded time."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--stall-seconds",
            type=float,
            default=None,
            help="Restart the cluster when work has waited this long while no worker ran a "
            "job (default: CLUSTER_STALL_SECONDS).",
        )
        parser.add_argument(
            "--stop-grace",
            type=float,
            default=STOP_GRACE_SECONDS,
            help=f"Seconds the cluster has to stop on SIGTERM before it is killed (default "
            f"{STOP_GRACE_SECONDS:g}).",
        )
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="Where the cluster reports its workers' progress (default: a temporary "
            "directory, removed on exit).",
        )
        # The supervised cluster itself, started by the supervisor.
        parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)

    def handle(self, *args, stall_seconds, stop_grace, state_dir, child, **options) -> None:
        if child is not None:
            cluster_child(child)
            return
        temporary = state_dir is None
        state_dir = state_dir or Path(tempfile.mkdtemp(prefix="aiw-cluster-"))
        try:
            Supervisor(
                state_dir=state_dir,
                stall_seconds=stall_seconds or settings.CLUSTER_STALL_SECONDS,
                stop_grace=stop_grace,
            ).run()
        finally:
            if temporary:
                shutil.rmtree(state_dir, ignore_errors=True)
