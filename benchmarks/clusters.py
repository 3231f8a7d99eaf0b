"""Benchmark: two worker clusters (two machines) sharing one Redis queue, against one.

    ./workforce bench clusters [--tasks 60] [--latency 0.5] [--workers 2]

Each task e-mails its own address (send_email through the outbox, to a real SMTP server) and
then answers: two model calls of --latency seconds each, against the fake OpenAI-compatible
endpoint over real HTTP. Each cluster runs as in production (`manage.py run_cluster`), with --workers worker
processes running one task each, so a second cluster is a second machine's capacity (on this
one box both share its cores: the figure shows the work is shared, not more CPU).

Three bursts: one cluster; two clusters; two clusters with one killed (SIGKILL to its whole
process group, the jobs it had taken from Redis included) once a quarter of the burst is done,
while the benchmark does every 2 s what run_due does for lost work. After each, from the
database and the SMTP server: every task done, no e-mail twice, none missing, no step repeated.

Redis: REDIS_URL when set, else 127.0.0.1:6379 when it answers; otherwise the benchmark says
so and stops. Its queue has a name of its own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiworkforce.settings")

from benchmarks.databases import bench_database_url

LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def redis_url() -> str | None:
    import redis

    url = os.environ.get("REDIS_URL") or LOCAL_REDIS
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        print(f"clusters: no Redis at {url} ({exc}); set REDIS_URL or run one at 127.0.0.1:6379")
        return None
    return url


def setup(url: str, queue: str) -> None:
    import django

    os.environ["DATABASE_URL"] = bench_database_url("aiworkforce_bench_clusters")
    os.environ.setdefault("SECRET_KEY", "benchmark-" + "x1y2z3" * 10)
    os.environ["LOG_LEVEL"] = "WARNING"
    django.setup()
    from django.core.management import call_command
    from django_q.conf import Conf

    call_command("migrate", verbosity=0)
    # This process enqueues into the queue the clusters read, as a web server with REDIS_URL.
    Conf.ORM, Conf.REDIS, Conf.PREFIX, Conf.CLUSTER_NAME = None, url, queue, queue


def mailer():
    from decimal import Decimal

    from aiworkforce.audit import Actor
    from anomalies.models import EmployeeRuleOverride, Rule
    from anomalies.services import rule_override_save
    from employees import services
    from employees.models import Employee, EmployeeStatus, Team, ToolGrant, ToolPolicy

    actor = Actor.system("benchmark")
    employee = Employee.objects.filter(handle="bench-mailer").first()
    if employee is None:
        team, _ = Team.objects.get_or_create(name="Benchmarks")
        employee = services.employee_create(
            employee=Employee(
                name="Bench mailer",
                handle="bench-mailer",
                team=team,
                role_title="Benchmark",
                job_description="Sends reports.",
                status=EmployeeStatus.ACTIVE,
                max_cost_per_task=Decimal("1000"),
                max_cost_per_day=Decimal("100000"),
            ),
            actor=actor,
        )
        services.tool_grant_save(
            grant=ToolGrant(
                employee=employee,
                tool_name="send_email",
                scope={"allowed_domains": ["example.com"]},
                policy=ToolPolicy.AUTO,
            ),
            actor=actor,
        )
        # A burst is a day's e-mails in a minute: the tool-call surge rule would pause it.
        rule_override_save(
            override=EmployeeRuleOverride(employee=employee, rule=Rule.TOOL_SURGE, enabled=False),
            actor=actor,
        )
    if employee.status == EmployeeStatus.PAUSED:  # by a run stopped half-way
        services.employee_transition(employee=employee, to=EmployeeStatus.ACTIVE, actor=actor)
    return employee


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per model call")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per cluster")
    args = parser.parse_args(argv)
    url = redis_url()
    if url is None:
        return 0
    queue = f"aiw-bench-{uuid.uuid4().hex[:10]}"
    setup(url, queue)

    from django.conf import settings

    from tasks.models import Task, TaskStatus
    from tests.fakes.burst import burst, lost_runs, problems, script, wait_done
    from tests.fakes.cluster import Cluster
    from tests.fakes.openai_server import FakeOpenAIServer
    from tests.fakes.smtp_server import FakeSMTPServer

    with FakeOpenAIServer() as model, FakeSMTPServer() as smtp:
        script(model, args.latency)
        # This process sends too (the outbox sweep, as run_due): to the same SMTP server.
        settings.MAILERS = {
            "default": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {"host": "127.0.0.1", "port": smtp.port, "timeout": 5},
            }
        }
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
            "LOG_LEVEL": "INFO",  # tests.fakes.cluster waits for its "running." line
            "REDIS_URL": url,
            "Q_CLUSTER_NAME": queue,
            "Q_WORKERS": str(args.workers),
            "TASKS_PER_WORKER": "1",
            "TASK_LEASE_SECONDS": "6",
            "TASK_LEASE_RENEW_SECONDS": "2",
            "OPENAI_API_KEY": "bench-key",
            "OPENAI_BASE_URL": model.base_url,
            "LLM_MAX_RETRIES": "0",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
        }
        employee = mailer()
        base = Task.objects.count()  # addresses stay unique across runs of the benchmark
        count, timeout = args.tasks, 30 + 6 * args.tasks * args.latency
        times, failures = {}, []
        for phase, clusters_n in (("one cluster", 1), ("two clusters", 2), ("one killed", 2)):
            smtp.received.clear()
            offset = base + len(times) * count
            clusters = [Cluster(env, command=("run_cluster",)) for _ in range(clusters_n)]
            try:
                ids = burst(employee, count, offset=offset)
                if phase == "one killed":
                    quarter = max(1, count // 4)
                    clusters[1].wait_for(
                        lambda ids=ids, quarter=quarter: (
                            Task.objects.filter(pk__in=ids, status=TaskStatus.DONE).count()
                            >= quarter
                        ),
                        "a quarter of the burst",
                        timeout=timeout,
                    )
                    clusters[1].kill()
                    times[phase] = wait_done(ids, clusters[:1], timeout, recover=True)
                else:
                    times[phase] = wait_done(ids, clusters, timeout)
            finally:
                for cluster in clusters:
                    if cluster.process.poll() is None:
                        cluster.stop()
            found = problems(ids, smtp, range(offset, offset + count))
            failures += [f"{phase}: {problem}" for problem in found]
            line = f"{phase}: {count} tasks done in {times[phase]:.2f} s"
            if phase == "two clusters":
                line += f" (x{times['one cluster'] / times[phase]:.2f} the one-cluster speed)"
            if phase == "one killed":
                line += f", {lost_runs(ids)} runs taken over from the killed cluster"
            print(line, flush=True)
        import redis

        connection = redis.Redis.from_url(url)
        keys = connection.keys(f"django_q:{queue}:*")
        if keys:
            connection.delete(*keys)
    duplicated = sum(1 for f in failures if "twice" in f)
    print(
        f"clusters: {count} tasks per burst, x{times['one cluster'] / times['two clusters']:.2f} "
        f"with two clusters, killed one: {len(failures)} problems"
    )
    for failure in failures:
        print("  " + failure)
    return 1 if failures or duplicated else 0


if __name__ == "__main__":
    raise SystemExit(main())
