"""The embedded PostgreSQL survives a killed server (stale postmaster.pid) and stops on command.

This starts a second, private server under a temporary var/ so the shared one is not disturbed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.aiworkforce.helpers import clean_env, manage

START = "from aiworkforce import embedded_db; print(embedded_db.ensure_running())"


def _start(var_dir: Path, **env: str) -> str:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", START],
        env=clean_env(AIW_VAR_DIR=str(var_dir), **env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent.parent,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _connect(socket_dir: str):
    return psycopg.connect(host=socket_dir, user="postgres", dbname="aiworkforce", autocommit=True)


@pytest.fixture
def private_var(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("v")
    yield var_dir
    manage("db", "stop", env={"AIW_VAR_DIR": str(var_dir)})


def test_server_restarts_after_being_killed_and_stops_on_command(private_var):
    socket_dir = _start(private_var)
    with _connect(socket_dir) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE kept (v vector(3))")
        conn.execute("INSERT INTO kept VALUES ('[1,2,3]')")

    pidfile = private_var / "pgdata" / "postmaster.pid"
    postmaster = psutil.Process(int(pidfile.read_text().split()[0]))
    children = postmaster.children()
    postmaster.send_signal(signal.SIGKILL)
    psutil.wait_procs([postmaster, *children], timeout=30)
    # Make the stale file point at a live process that is not postgres, as after pid reuse.
    lines = pidfile.read_text().splitlines()
    lines[0] = str(os.getpid())
    pidfile.write_text("\n".join(lines) + "\n")

    socket_dir = _start(private_var)
    with _connect(socket_dir) as conn:
        assert conn.execute("SELECT v::text FROM kept").fetchone() == ("[1,2,3]",)

    env = {"AIW_VAR_DIR": str(private_var)}
    assert "running" in manage("db", "status", env=env).stdout
    result = manage("db", "stop", env=env)
    assert result.returncode == 0, result.stderr
    assert "Embedded PostgreSQL stopped." in result.stdout
    assert not pidfile.exists()
    assert "stopped" in manage("db", "status", env=env).stdout
    # Stopping twice is harmless, and a command that needs no database does not start it.
    assert "was not running" in manage("db", "stop", env=env).stdout
    assert manage("check", env=env).returncode == 0
    time.sleep(0.2)
    assert not pidfile.exists()


def test_parallel_first_starts_share_one_server(private_var):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        sockets = list(pool.map(lambda _: _start(private_var), range(3)))
    assert len(set(sockets)) == 1
    postmasters = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres"
        and str(private_var) in " ".join(p.info["cmdline"] or [])
        and "-D" in (p.info["cmdline"] or [])
    ]
    assert len(postmasters) == 1


def _shared_buffers(socket_dir: str) -> str:
    with _connect(socket_dir) as conn:
        return conn.execute("SHOW shared_buffers").fetchone()[0]


def test_a_new_server_sizes_its_shared_buffers_and_keeps_the_size(private_var):
    from aiworkforce.embedded_db import shared_buffers_for_this_machine

    socket_dir = _start(private_var)
    assert _shared_buffers(socket_dir) == shared_buffers_for_this_machine()
    manage("db", "stop", env={"AIW_VAR_DIR": str(private_var)})
    assert _shared_buffers(_start(private_var)) == shared_buffers_for_this_machine()


def test_a_server_that_cannot_start_with_its_size_goes_back_to_the_default(private_var):
    # 500 GB of shared memory is more than this machine can map: the restart fails.
    socket_dir = _start(private_var, EMBEDDED_DB_SHARED_BUFFERS="500GB")
    assert _shared_buffers(socket_dir) == "128MB"
    assert "shared_buffers" not in (private_var / "pgdata" / "postgresql.auto.conf").read_text()


STOP_THEN_START = """
import psycopg
from aiworkforce import embedded_db
embedded_db.ensure_running()
assert embedded_db.stop()
socket_dir = embedded_db.ensure_running()
with psycopg.connect(host=socket_dir, user="postgres", dbname="aiworkforce", connect_timeout=5) as conn:
    print("connected", conn.execute("SELECT 1").fetchone()[0])
"""


def test_ensure_running_right_after_stop_returns_a_server_that_accepts_connections(private_var):
    import subprocess
    import sys

    _start(private_var)  # created and sized once, so the run below is only stop → start
    result = subprocess.run(
        [sys.executable, "-c", STOP_THEN_START],
        env=clean_env(AIW_VAR_DIR=str(private_var)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "connected 1"


def test_a_server_that_never_accepts_connections_is_a_clear_error_within_the_timeout(tmp_path):
    from aiworkforce.embedded_db import EmbeddedDatabaseError, _wait_until_accepting

    started = time.monotonic()
    with pytest.raises(EmbeddedDatabaseError) as raised:
        _wait_until_accepting(str(tmp_path), timeout=0.5)  # no server listens there
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "does not accept connections" in message and str(tmp_path) in message
    assert "db stop" in message
