"""A django-q2 worker cluster (`manage.py qcluster`) in its own process group, as an operator runs it.

Used by the worker tests and the benchmarks. `command=("run_cluster", ...)` starts it under
its supervisor instead (tasks.supervisor).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def database_url_for_workers() -> str:
    """The test database's URL, for worker processes started from a test."""
    import urllib.parse

    from django.db import connection

    params = connection.get_connection_params()
    host = urllib.parse.quote(params["host"], safe="")
    port = f":{params['port']}" if params.get("port") else ""
    user = urllib.parse.quote(params.get("user") or "")
    password = urllib.parse.quote(params.get("password") or "")
    return f"postgres://{user}:{password}@{host}{port}/{connection.settings_dict['NAME']}"


class Cluster:
    def __init__(self, env: dict[str, str], command: tuple[str, ...] = ("qcluster",)) -> None:
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), *command],
            env=env,
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.wait_for(lambda: any("running." in line for line in self.output), "cluster start")
        except AssertionError:
            self.kill()  # a cluster that never said it runs is not left behind
            raise

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)

    def wait_for(self, condition, what: str, timeout: float = 30, every: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"cluster exited during {what}:\n{''.join(self.output)}")
            time.sleep(every)
        raise AssertionError(f"timed out waiting for {what}:\n{''.join(self.output[-40:])}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # gone already
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            # To the main process only: it stops its workers in order, in about a second. A
            # SIGTERM to the whole group kills the sentinel at once (django-q2 leaves SIGTERM at
            # its default there) and the main process then hangs until the kill below.
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
