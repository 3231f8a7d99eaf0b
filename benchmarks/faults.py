"""Benchmark: kill worker processes at random while a burst of tasks with side effects runs.

    ./workforce bench faults [--tasks 100] [--kills 100] [--interval 2-4] [--waves 4]

Each task e-mails a customer (`send_email`, through the outbox, to a real SMTP server) and
refunds an order (`refund_order`, a destructive tool of a real MCP server over streamable
HTTP, granted to run without approval), against the fake model endpoint over real HTTP. The
cluster runs as deployed, under its supervisor (`manage.py run_cluster`). Meanwhile a killer
sends SIGKILL to a random worker process of the cluster every 2-4 s. The tasks come in
`--waves` bursts spread over the kills' time, the model's latency set so that each wave keeps
the cluster busy for about half the time to the next: kills hit busy workers (their tasks
must be taken over and resumed) and idle ones (killing the idle worker that holds the task
queue's lock freezes django-q2: the supervisor must notice when the next wave waits, and
restart the cluster). Afterwards, from the database and the two servers:

- every task finished; no e-mail reached the SMTP server twice (by Message-ID) and none
  missing; no refund reached the MCP server twice, and none reported done that it never got;
- every task's steps are numbered 1..n with no gap or repeat, each run's steps in one piece;
- the audit chain verifies (aiworkforce.audit);
- the longest stall: the longest time, while tasks were unfinished, in which no step was
  recorded and no task finished (a wave arriving at an idle cluster starts the clock).

A refund whose worker died between recording its intent and hearing the answer is answered
"unknown" and never repeated (at most once, by design): those are counted on their own line
(with how many the MCP server did get), neither lost nor duplicated. An e-mail is sent again
only by the outbox sweep (as `run_due` does every minute; here the benchmark runs it after the
burst, until the outbox is empty), with the same Message-ID.

The last line reads `faults: 100 tasks, 100 kills, 100 done, 0 duplicated, 0 lost, longest
stall 12.3 s`; the exit status is 1 if anything was duplicated or lost (or the audit chain is
broken). tests/tasks/test_faults.py runs a smaller burst through `run_faults`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

BASE_DIR = Path(__file__).resolve().parent.parent
CALLS_PER_TASK = 3  # e-mail, refund, answer
REFUND = "mcp:orders/refund_order"
# The tool-surge anomaly rule pauses an employee past 60 calls of one tool an hour: the burst
# is a team's work, at most this many tasks each.
TASKS_PER_EMPLOYEE = 40
MARKER = re.compile(r"order FLT-(\d+)")


def model_script(latency: float):
    """The model: e-mail the customer, refund the order, answer (from the tool results so far)."""
    from tests.fakes.openai_server import delay, dynamic, reply

    def answer(body: dict):
        n = MARKER.search(json.dumps(body["messages"])).group(1)
        done = sum(1 for message in body["messages"] if message["role"] == "tool")
        if done == 0:
            email = {
                "to": [f"customer{n}@example.com"],
                "subject": f"Your refund for order FLT-{n}",
                "body": "We are refunding your order today.",
            }
            response = reply(tool_calls=[("send_email", email)])
        elif done == 1:
            refund = {"order_id": f"FLT-{n}", "amount": 12.5}
            response = reply(tool_calls=[("mcp__orders__refund_order", refund)])
        else:
            response = reply(f"Refunded order FLT-{n} and told the customer.")
        return delay(latency, response) if latency else response

    return dynamic(answer)


@dataclass
class Report:
    tasks: int
    kills: int
    done: int = 0
    duplicated: int = 0
    lost: int = 0
    longest_stall: float = 0.0
    audit_breaks: int = 0
    restarts: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.duplicated and not self.lost and not self.audit_breaks

    def summary(self) -> str:
        return (
            f"faults: {self.tasks} tasks, {self.kills} kills, {self.done} done, "
            f"{self.duplicated} duplicated, {self.lost} lost, "
            f"longest stall {self.longest_stall:.1f} s"
        )


def _setup_workforce(tasks: int, mcp_url: str) -> list:
    """Employees with the two tools granted to run without approval, and the MCP server."""
    from decimal import Decimal

    from aiworkforce.audit import Actor
    from employees import services
    from employees.models import Employee, EmployeeStatus, Team, ToolGrant, ToolPolicy
    from tasks.mcp.services import mcp_server_add, mcp_tools_refresh

    actor = Actor.system("benchmark")
    server = mcp_server_add(name="orders", url=mcp_url, actor=actor)
    mcp_tools_refresh(server=server, actor=actor)
    team = Team.objects.create(name="Fault drill")
    employees = []
    for n in range(math.ceil(tasks / TASKS_PER_EMPLOYEE)):
        employee = services.employee_create(
            employee=Employee(
                name=f"Refunder {n}",
                handle=f"refunder-{n}",
                team=team,
                role_title="Refunds",
                job_description="Refunds orders and tells the customer.",
                status=EmployeeStatus.ACTIVE,
                max_cost_per_task=Decimal("1000"),
                max_cost_per_day=Decimal("100000"),
            ),
            actor=actor,
        )
        for tool, scope in (("send_email", {"allowed_domains": ["example.com"]}), (REFUND, {})):
            services.tool_grant_save(
                grant=ToolGrant(
                    employee=employee, tool_name=tool, scope=scope, policy=ToolPolicy.AUTO
                ),
                actor=actor,
            )
        employees.append(employee)
    return employees


class Killer(threading.Thread):
    """SIGKILL a random worker process of the cluster every `interval` seconds, `kills` times."""

    def __init__(self, state_dir: Path, kills: int, interval: tuple[float, float]) -> None:
        super().__init__(name="killer", daemon=True)
        self.state_dir, self.kills, self.interval = state_dir, kills, interval
        self.killed: list[tuple[float, int]] = []  # (epoch seconds, pid)
        self.stop = threading.Event()

    def _pause(self) -> float:
        return random.uniform(*self.interval)  # noqa: S311 - a moment, not a secret

    def run(self) -> None:
        from tasks.beacon import cluster_worker_pids

        while len(self.killed) < self.kills and not self.stop.wait(self._pause()):
            pids = cluster_worker_pids(self.state_dir)
            while not pids and not self.stop.wait(0.2):  # being restarted
                pids = cluster_worker_pids(self.state_dir)
            if not pids:
                return
            pid = random.choice(pids)  # noqa: S311 - a victim, not a secret
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed.append((time.time(), pid))


def _wait(condition, timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def run_faults(
    *,
    tasks: int,
    kills: int,
    interval: tuple[float, float],
    waves: int,
    base_env: dict[str, str],
    model_server,
    state_dir: Path,
    stall_seconds: float | None = None,
    settle_seconds: float = 300,
    log=print,
) -> Report:
    """The whole drill, on the database Django is set up with (and `base_env` names)."""
    from tasks.mcp import client
    from tasks.models import Task, TaskStatus
    from tasks.services import task_create
    from tests.fakes.mcp_servers import http_server
    from tests.fakes.smtp_server import FakeSMTPServer

    sink = state_dir / "refunds.jsonl"
    workers = int(base_env.get("Q_WORKERS") or 2)
    window = sum(interval) / 2 * kills  # about how long the kills take
    # Each wave's work (its calls / workers x latency) lasts about half the time to the next
    # (one wave: all of the kills' time).
    busy = 0.5 if waves > 1 else 1.0
    latency = min(3.0, busy * window * workers / (tasks * CALLS_PER_TASK))
    with FakeSMTPServer() as smtp, http_server(env={"MCP_SINK": str(sink)}) as mcp_url:
        employees = _setup_workforce(tasks, mcp_url)
        model_server.enqueue(model_script(latency))
        env = {
            **base_env,
            "OPENAI_API_KEY": "sk-fault-drill",
            "OPENAI_BASE_URL": model_server.base_url,
            "LLM_MAX_RETRIES": "0",
            "Q_WORKERS": str(workers),
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
            "EMAIL_TIMEOUT": "5",
            # An attempt cut short by a kill is tried again after 10 s, not 5 minutes.
            "OUTBOX_SENDING_TIMEOUT_SECONDS": "10",
            "OUTBOX_BACKOFF_SECONDS": "5",
        }
        command = [sys.executable, str(BASE_DIR / "manage.py"), "run_cluster"]
        command += ["--state-dir", str(state_dir)]
        if stall_seconds:
            command += ["--stall-seconds", str(stall_seconds)]
        with open(state_dir / "cluster.log", "w") as output:
            supervisor = subprocess.Popen(
                command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        killer = Killer(state_dir, kills, interval)
        try:
            from tasks.beacon import cluster_worker_pids

            if not _wait(lambda: len(cluster_worker_pids(state_dir)) == workers, 60):
                raise RuntimeError(f"the cluster did not start: see {state_dir / 'cluster.log'}")
            log(
                f"{tasks} tasks in {waves} waves for {len(employees)} employees, {workers} worker "
                f"processes, model {latency:.2f} s a call; a kill every "
                f"{interval[0]:g}-{interval[1]:g} s"
            )
            started = time.time()
            ids: list[int] = []
            killer.start()
            for wave in range(waves):
                # Waves at even moments of the kills' time: between them the cluster is idle,
                # and a kill then may freeze it before the next wave comes.
                time.sleep(max(0.0, started + wave * window / waves - time.time()))
                ids += [
                    task_create(
                        employee=employees[n % len(employees)],
                        title=f"Refund FLT-{n}",
                        input=f"Refund order FLT-{n} and tell the customer.",
                        urgent=True,
                    )[0].pk
                    for n in range(wave * tasks // waves, (wave + 1) * tasks // waves)
                ]
            killer.join()
            log(f"{len(killer.killed)} kills in {time.time() - started:.0f} s")
            unfinished = Task.objects.filter(pk__in=ids).exclude(
                status__in=[TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED]
            )
            _wait(lambda: not unfinished.exists(), settle_seconds)
            _settle_outbox(ids, env, timeout=settle_seconds)
        finally:
            killer.stop.set()
            stop_seconds = _stop(supervisor)
        report = check(ids=ids, smtp=smtp, sink=sink, kills=killer.killed)
        client.close_sessions()  # ours (the tools listing), before their server goes
    report.lines.append(f"the supervisor stopped the cluster {stop_seconds:.1f} s after SIGTERM")
    return report


def _settle_outbox(ids: list[int], env: dict[str, str], timeout: float) -> None:
    """Run `run_due` (as cron would, only sooner) until no e-mail of the burst waits."""
    from tasks.models import OutboxEmail, OutboxStatus

    waiting = OutboxEmail.objects.filter(
        task_id__in=ids, status__in=[OutboxStatus.PENDING, OutboxStatus.SENDING]
    )
    deadline = time.monotonic() + timeout
    while waiting.exists() and time.monotonic() < deadline:
        time.sleep(3)
        subprocess.run(
            [sys.executable, str(BASE_DIR / "manage.py"), "run_due"],
            env=env,
            capture_output=True,
            timeout=120,
        )


def _stop(supervisor: subprocess.Popen) -> float:
    started = time.monotonic()
    supervisor.send_signal(signal.SIGTERM)
    try:
        supervisor.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
    return time.monotonic() - started


def check(*, ids, smtp, sink: Path, kills: list[tuple[float, int]]) -> Report:
    """What the database and the two servers say about the burst."""
    from aiworkforce.audit import ChainBreak, audit_chain_breaks
    from aiworkforce.models import AuditEntry
    from tasks.models import OutboxEmail, Run, RunStatus, Step, StepKind, Task, TaskStatus

    report = Report(tasks=len(ids), kills=len(kills))
    tasks = {t.pk: t for t in Task.objects.filter(pk__in=ids)}
    report.done = sum(1 for t in tasks.values() if t.status == TaskStatus.DONE)
    not_done = [(pk, t.status, t.status_reason) for pk, t in tasks.items() if t.status != "done"]
    runs = {r.pk: r for r in Run.objects.filter(task_id__in=ids)}
    steps: dict[int, list] = {pk: [] for pk in ids}
    for step in Step.objects.filter(task_id__in=ids).order_by("task_id", "seq"):
        steps[step.task_id].append(step)

    gaps = repeats = broken_runs = twice_called = unknown = unknown_reached = errors = 0
    refunds_ok: set[str] = set()
    for task_steps in steps.values():
        seqs = [s.seq for s in task_steps]
        repeats += len(seqs) - len(set(seqs))
        gaps += (max(seqs) - len(set(seqs))) if seqs else 0
        numbers = [runs[s.run_id].number for s in task_steps]
        broken_runs += numbers != sorted(numbers)
        results = [s.payload for s in task_steps if s.kind == StepKind.TOOL_CALL]
        results = [p for p in results if p.get("status") != "started"]  # intents
        for name in ("send_email", REFUND):
            twice_called += max(0, sum(1 for p in results if p["name"] == name) - 1)
        for payload in results:
            if payload["name"] == REFUND:
                order = payload["arguments"]["order_id"]
                if payload["status"] == "ok":
                    refunds_ok.add(order)
                elif payload["status"] == "unknown":
                    unknown += 1
                    unknown_reached += order in _refunds(sink)
                else:
                    errors += 1

    # E-mails: each task's one outbox row reached the SMTP server exactly once.
    received = Counter(str(m.message["Message-ID"]).strip() for m in smtp.received)
    expected = set(OutboxEmail.objects.filter(task_id__in=ids).values_list("message_id", flat=True))
    mails_twice = sum(count - 1 for mid, count in received.items() if count > 1)
    mails_missing = len(expected - set(received))
    mailless = sum(1 for pk in ids if tasks[pk].status == "done" and not _sent_email(steps[pk]))
    # Refunds: none twice at the MCP server, and every one reported done is there.
    refunds = _refunds(sink)
    refunds_twice = sum(count - 1 for count in refunds.values() if count > 1)
    refunds_missing = len(refunds_ok - set(refunds))

    report.duplicated = repeats + twice_called + mails_twice + refunds_twice
    report.lost = len(ids) - report.done + gaps + mails_missing + mailless + refunds_missing
    report.longest_stall = _longest_stall(steps, tasks)

    checked = 0
    for item in audit_chain_breaks():
        if isinstance(item, ChainBreak):
            report.audit_breaks += 1
        else:
            checked = item
    report.restarts = AuditEntry.objects.filter(action="cluster.restarted").count()
    lost_runs = [r for r in runs.values() if r.status == RunStatus.LOST]
    report.lines += [
        f"tasks: {report.done} done of {len(ids)}"
        + (f"; not done: {not_done[:5]}" if not_done else ""),
        f"steps: {sum(map(len, steps.values()))} recorded, {gaps} missing, {repeats} repeated, "
        f"{broken_runs} tasks with a run's steps not in one piece",
        f"runs: {len(runs)} for {len(ids)} tasks, {len(lost_runs)} lost with their worker "
        f"and resumed; longest from a kill to the take-over: {_takeover(kills, runs):.1f} s",
        f"e-mails: {sum(received.values())} received for {len(expected)} in the outbox, "
        f"{mails_twice} twice, {mails_missing} missing, {mailless} tasks done without one",
        f"refunds: {sum(refunds.values())} at the MCP server, {refunds_twice} twice, "
        f"{refunds_missing} reported done but never made, {errors} failed calls",
        f"unknown outcomes (the worker died during the call; never repeated): {unknown}, "
        f"of which the MCP server got {unknown_reached}",
        f"tool calls answered twice in one task: {twice_called}",
        f"cluster restarts by the supervisor: {report.restarts}",
        f"audit chain: {checked} entries, "
        + (f"{report.audit_breaks} BREAKS" if report.audit_breaks else "intact"),
    ]
    return report


def _refunds(sink: Path) -> Counter:
    if not sink.exists():
        return Counter()
    return Counter(json.loads(line)["order_id"] for line in sink.read_text().splitlines())


def _sent_email(task_steps) -> bool:
    return any(
        s.payload.get("name") == "send_email" and s.payload.get("status") == "ok"
        for s in task_steps
        if s.kind == "tool_call"
    )


def _longest_stall(steps: dict[int, list], tasks: dict) -> float:
    """The longest time, while a task was unfinished, with no step recorded and none finished."""
    now = time.time()
    events = []  # (moment, +1 a task arrives / 0 a step / -1 a task finishes)
    for task in tasks.values():
        events.append((task.created_at.timestamp(), 1))
        events.append((task.finished_at.timestamp() if task.finished_at else now, -1))
    events += [(step.created_at.timestamp(), 0) for ss in steps.values() for step in ss]
    unfinished, last, longest = 0, 0.0, 0.0
    for moment, change in sorted(events, key=lambda event: (event[0], -event[1])):
        if change == 1:
            if not unfinished:
                last = moment  # the clock starts when work arrives at an idle cluster
            unfinished += 1
            continue
        longest = max(longest, moment - last)
        last = moment
        unfinished += change
    return longest


def _takeover(kills: list[tuple[float, int]], runs: dict) -> float:
    """For each run lost with a killed worker: from the kill to the next run's start."""
    by_task: dict[int, list] = {}
    for run in runs.values():
        by_task.setdefault(run.task_id, []).append(run)
    longest = 0.0
    for task_runs in by_task.values():
        task_runs.sort(key=lambda r: r.number)
        for lost, after in itertools.pairwise(task_runs):
            if lost.status != "lost":
                continue
            pid = int(lost.worker.split(":")[1])
            moments = [at for at, killed in kills if killed == pid]
            if moments:
                longest = max(longest, after.started_at.timestamp() - moments[0])
    return longest


def fresh_database_url(name: str) -> str:
    """Database `name` on the embedded server, dropped and created again (a clean audit chain)."""
    import psycopg

    from aiworkforce import embedded_db
    from benchmarks.databases import bench_database_url

    socket_dir = embedded_db.ensure_running()
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return bench_database_url(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--interval", default="2-4", help="seconds between kills: LOW-HIGH")
    parser.add_argument("--waves", type=int, default=4, help="the tasks arrive in this many bursts")
    parser.add_argument("--stall-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    low, _, high = args.interval.partition("-")
    interval = (float(low), float(high or low))

    import django

    os.environ["DEBUG"] = "false"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("SECRET_KEY", "benchmark-" + "f4u1t5" * 10)
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = fresh_database_url("aiworkforce_bench_faults")
    django.setup()
    from django.core.management import call_command

    from tests.fakes.openai_server import FakeOpenAIServer

    call_command("migrate", verbosity=0)
    with FakeOpenAIServer() as model_server, tempfile.TemporaryDirectory() as state:
        report = run_faults(
            tasks=args.tasks,
            kills=args.kills,
            interval=interval,
            waves=args.waves,
            base_env=dict(os.environ),
            model_server=model_server,
            state_dir=Path(state),
            stall_seconds=args.stall_seconds,
        )
    for line in report.lines:
        print(f"  {line}")
    print(report.summary())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
