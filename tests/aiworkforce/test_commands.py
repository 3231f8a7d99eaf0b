"""The operator commands: demo, verify_audit, and up (the run command's web server + workers)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import psutil
import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from aiworkforce.models import AuditEntry
from employees.models import BriefVersion, Employee, Team, ToolGrant
from tests.aiworkforce.helpers import BASE_DIR, clean_env, manage


@pytest.mark.django_db
def test_demo_loads_a_workforce_once(capsys):
    call_command("demo")
    counts = (
        Team.objects.count(),
        Employee.objects.count(),
        ToolGrant.objects.count(),
        AuditEntry.objects.count(),
    )
    assert counts[0] >= 1 and counts[1] >= 3
    assert all(e.sop and e.goals and e.escalation_rules for e in Employee.objects.all())
    assert BriefVersion.objects.count() == counts[1]
    call_command("demo")
    assert "nothing changed" in capsys.readouterr().out
    again = (
        Team.objects.count(),
        Employee.objects.count(),
        ToolGrant.objects.count(),
        AuditEntry.objects.count(),
    )
    assert again == counts


@pytest.mark.django_db
def test_verify_audit_exits_zero_after_the_demo_load(capsys):
    call_command("demo")
    call_command("verify_audit")
    assert "Audit chain intact" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def scratch_database(django_db_blocker):
    """An empty database on the same server, so `up` migrates and seeds from nothing."""
    name = f"aiw_up_{secrets.token_hex(4)}"
    with django_db_blocker.unblock():
        params = connection.get_connection_params()
    params = {k: v for k, v in params.items() if k in ("host", "port", "user", "password")}
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    user = urllib.parse.quote(params.get("user") or "")
    password = urllib.parse.quote(params.get("password") or "")
    host = urllib.parse.quote(params["host"], safe="")
    port = f":{params['port']}" if params.get("port") else ""
    yield f"postgres://{user}:{password}@{host}{port}/{name}"
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_up_serves_the_product_runs_jobs_and_stops_cleanly_on_ctrl_c(scratch_database, tmp_path):
    port = _free_port()
    env = clean_env(DATABASE_URL=scratch_database, AIW_VAR_DIR=str(tmp_path), DEBUG="true")
    proc = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "up", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    login = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and login is None:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            login = re.search(r"Log in as (\S+) / (\S+)", line)
        assert login, "".join(output)
        assert any(f"http://localhost:{port}/" in line for line in output)

        # A person logs in with the printed credentials and sees the demo workforce.
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        opener.open(f"{base}/accounts/login/").read()
        csrf = next(c.value for c in jar if c.name == "csrftoken")
        body = urllib.parse.urlencode(
            {"login": login.group(1), "password": login.group(2), "csrfmiddlewaretoken": csrf}
        ).encode()
        request = urllib.request.Request(
            f"{base}/accounts/login/", data=body, headers={"Referer": f"{base}/accounts/login/"}
        )
        page = opener.open(request).read().decode()
        assert "What needs you now" in page  # signing in lands on the dashboard
        page = opener.open(f"{base}/employees/").read().decode()
        assert "Employee directory" in page and "Ava" in page

        # The worker cluster picks up and runs a job.
        job = manage(
            "shell",
            "-c",
            "from django_q.tasks import async_task, result; print('result', result(async_task('math.floor', 2.5), wait=20000))",
            env={"DATABASE_URL": scratch_database, "AIW_VAR_DIR": str(tmp_path)},
        )
        assert "result 2" in job.stdout, job.stdout + job.stderr

        # Within seconds the demo workforce has worked: one task done, two waiting for
        # approval (Ava's reply, and her refund after a lookup on the order desk, an MCP server
        # the worker starts over stdio), one escalated.
        demo = manage(
            "shell",
            "-c",
            "import time\n"
            "from tasks.models import Task\n"
            "for _ in range(100):\n"
            "    statuses = sorted(Task.objects.values_list('status', flat=True))\n"
            "    if statuses == ['done', 'waiting_approval', 'waiting_approval', 'waiting_escalation']: break\n"
            "    time.sleep(0.2)\n"
            "print('demo', statuses)",
            env={"DATABASE_URL": scratch_database, "AIW_VAR_DIR": str(tmp_path)},
        )
        expected = "demo ['done', 'waiting_approval', 'waiting_approval', 'waiting_escalation']"
        assert expected in demo.stdout, demo.stdout + demo.stderr

        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # runserver and the cluster's processes
    finally:
        os.kill(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        output.append(rest)
    assert proc.returncode == 0, "".join(output)
    assert "Stopped the web server and the worker cluster" in "".join(output)
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []


def test_up_refuses_a_busy_port_with_a_clear_message(scratch_database, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = manage(
            "up",
            "--port",
            str(port),
            env={"DATABASE_URL": scratch_database, "AIW_VAR_DIR": str(tmp_path)},
        )
    assert result.returncode != 0
    assert f"Port {port} on 127.0.0.1 is in use; pick another with --port." in result.stderr
