"""Prepare the database and run the web server and the worker cluster together (the run command).

Ctrl-C (SIGINT) or SIGTERM stops both; if either exits on its own, the other is stopped too.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from employees.demo import load_demo_tasks, load_demo_workforce
from employees.memory.embeddings import get_embedder
from employees.memory.partitions import memory_partitions_ensure
from employees.memory.services import memories_embed_pending, request_embedding
from employees.memory.vectors import MemoryConfigurationError, check_embedding_dimensions
from employees.models import MemoryEntry

DEV_USERNAME = "admin"
STOP_GRACE_SECONDS = 10
# Memories `up` embeds itself before starting (the offline embedder does about 3,000 a second).
STARTUP_EMBED_LIMIT = 20_000


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Command(BaseCommand):
    help = "Migrate, load the demo workforce and run the web server and the worker cluster."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1)."
        )
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help="Port to listen on (default: 8000, or the next free one).",
        )
        parser.add_argument(
            "--no-demo", action="store_true", help="Do not load the demo workforce."
        )

    def handle(self, *args, host: str, port: int | None, no_demo: bool, **options) -> None:
        started = time.monotonic()
        port = self._choose_port(host, port)
        self._say("Applying database migrations")
        call_command("migrate", interactive=False, verbosity=0)
        if missing := memory_partitions_ensure():  # e.g. a restore that skipped triggers
            self._say(f"Made the memory partitions of {missing} employees and teams")
        try:
            check_embedding_dimensions()
        except MemoryConfigurationError as exc:
            raise CommandError(str(exc)) from None
        self._embed_pending_memories()
        login = self._dev_superuser() if settings.DEBUG else None
        if not no_demo:
            owner = get_user_model().objects.filter(username=DEV_USERNAME).first()
            created = load_demo_workforce(owner=owner)
            if any(created.values()):
                self._say(f"Loaded the demo workforce ({created['employees']} employees)")
        self._run_processes(host, port, login, started, demo=not no_demo)

    def _embed_pending_memories(self) -> None:
        """With the offline embedder, memories left without a vector (by an upgrade, or a
        worker stopped before its embedding job) are embedded before anything recalls: up to
        STARTUP_EMBED_LIMIT of them (seconds), the rest by a worker's job once it runs."""
        if not get_embedder().local:
            return  # the endpoint may be slow or down: the workers' jobs and run_due do it
        pending = MemoryEntry.objects.filter(embedding__isnull=True).count()
        if not pending:
            return
        now = min(pending, STARTUP_EMBED_LIMIT)
        later = f"; a worker embeds the other {pending - now:,}" if pending > now else ""
        self._say(f"Embedding {now:,} memories{later}")
        done, batch = 0, 1000
        while done < now:
            embedded = memories_embed_pending(batch=min(batch, now - done), max_batches=1)
            if not embedded:
                break
            done += embedded
            if now > batch:
                self.stdout.write(f"    {done:,} / {now:,}")
        if pending > now:
            request_embedding()  # a broker that is down is logged; run_due embeds them then

    def _say(self, message: str) -> None:
        self.stdout.write(f"==> {message}")
        self.stdout.flush()

    def _choose_port(self, host: str, port: int | None) -> int:
        if port is not None:
            if not _port_free(host, port):
                raise CommandError(f"Port {port} on {host} is in use; pick another with --port.")
            return port
        for candidate in range(8000, 8020):
            if _port_free(host, candidate):
                return candidate
        raise CommandError("Ports 8000-8019 are all in use; pick a free one with --port.")

    def _dev_superuser(self) -> tuple[str, str]:
        """A development login (DEBUG only), its password kept in var/ so every run prints it."""
        User = get_user_model()
        password_file = Path(settings.VAR_DIR) / "dev-admin-password"
        if password_file.exists():
            password = password_file.read_text().strip()
        else:
            password = secrets.token_urlsafe(12)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        user = User.objects.filter(username=DEV_USERNAME).first()
        if user is None:
            User.objects.create_superuser(DEV_USERNAME, "admin@example.com", password)
            self._say("Created the development superuser")
        elif not user.check_password(password):
            return DEV_USERNAME, "(changed since it was created; not shown)"
        return DEV_USERNAME, password

    def _run_processes(self, host: str, port: int, login, started: float, *, demo: bool) -> None:
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Children get their own process group so that our handler, not the terminal, decides
        # the order of shutdown; both still stop on Ctrl-C.
        web = subprocess.Popen(
            [*manage, "runserver", f"{host}:{port}", "--noreload", "--skip-checks"],
            env=env,
            start_new_session=True,
        )
        # The cluster under its supervisor (restarted when it stalls; tasks.supervisor).
        workers = subprocess.Popen([*manage, "run_cluster"], env=env, start_new_session=True)
        children = [web, workers]
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

        if _wait_for_port(host, port, web, timeout=30):
            url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}/"  # noqa: S104
            # Only now, so the health-check demo task finds the server answering.
            if demo and load_demo_tasks(base_url=url):
                self._say("Gave the demo employees their first tasks: see the Tasks page")
            self.stdout.write("")
            self._say(f"AI Workforce is ready in {time.monotonic() - started:.1f}s at {url}")
            if login:
                self._say(f"Log in as {login[0]} / {login[1]}  (development only)")
            if not settings.OPENAI_API_KEY:
                self._say("Offline mode: no OPENAI_API_KEY, employees follow their SOPs literally")
            self._say("Web server and worker cluster running; press Ctrl-C to stop both")
            self.stdout.write("")
        elif not stopping:
            self.stderr.write("The web server did not start; see its output above.")
            stopping = True

        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGINT if child is web else signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        failed = [
            child for child in children if child.returncode not in (0, -2, -15, 1) and not stopping
        ]
        self._say("Stopped the web server and the worker cluster")
        if failed:
            raise CommandError("A process stopped unexpectedly; see its output above.")
