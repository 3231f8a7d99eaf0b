"""Two worker clusters (two machines) sharing the work through a real Redis server.

Uses REDIS_URL when set, else a Redis at 127.0.0.1:6379 when one answers, else skips saying
so. Each test has its own queue name, so it never touches another site's queue.
"""

from __future__ import annotations

import os
import uuid

import pytest
from django_q.conf import Conf

from employees.models import ToolPolicy
from tasks.models import Task, TaskStatus
from tests.factories import EmployeeFactory, ToolGrantFactory
from tests.fakes.burst import burst, lost_runs, problems, script, wait_done
from tests.fakes.cluster import Cluster
from tests.tasks.test_workers import smtp, worker_env  # noqa: F401 (fixtures)

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
MODEL_DELAY = 0.4  # seconds per model call; two calls per task
SUPERVISED = ("run_cluster",)  # each machine runs its cluster as in production


@pytest.fixture
def redis_url():
    url = os.environ.get("REDIS_URL") or LOCAL_REDIS
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {url} ({exc}); set REDIS_URL or run one at 127.0.0.1:6379")
    return url


@pytest.fixture
def shared_queue(redis_url, monkeypatch):
    """This test process enqueues into the queue the clusters read (a site's REDIS_URL)."""
    name = f"aiw-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", redis_url)
    monkeypatch.setattr(Conf, "PREFIX", name)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", name)
    yield name
    connection = redis.Redis.from_url(redis_url)
    keys = connection.keys(f"django_q:{name}:*")
    if keys:
        connection.delete(*keys)


@pytest.fixture
def cluster_env(worker_env, redis_url, shared_queue, smtp, settings):  # noqa: F811
    # This process sends too (the outbox sweep, as run_due): to the same SMTP server.
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": smtp.port, "timeout": 5},
        }
    }
    return {
        **worker_env,
        "REDIS_URL": redis_url,
        "Q_CLUSTER_NAME": shared_queue,
        "Q_WORKERS": "2",
        "TASKS_PER_WORKER": "1",  # one task per worker: the broker alone shares the work
        "TASK_LEASE_SECONDS": "3",
        "TASK_LEASE_RENEW_SECONDS": "1",
    }


def _mailer():
    employee = EmployeeFactory(handle="mailer")
    ToolGrantFactory(
        employee=employee,
        tool_name="send_email",
        scope={"allowed_domains": ["example.com"]},
        policy=ToolPolicy.AUTO,
    )
    return employee


def test_two_clusters_share_a_burst_and_finish_it_faster(model_server, smtp, cluster_env):  # noqa: F811
    employee = _mailer()
    script(model_server, MODEL_DELAY)
    count = 16
    one = Cluster(cluster_env, command=SUPERVISED)
    try:
        alone = wait_done(burst(employee, count), [one], timeout=60)
    finally:
        one.stop()
    first_ids = list(Task.objects.values_list("pk", flat=True))

    clusters = [Cluster(cluster_env, command=SUPERVISED), Cluster(cluster_env, command=SUPERVISED)]
    try:
        shared = wait_done(burst(employee, count, offset=count), clusters, timeout=60)
    finally:
        for cluster in clusters:
            cluster.stop()

    speedup = alone / shared
    print(
        f"\n{count} tasks: one cluster {alone:.2f} s, two clusters {shared:.2f} s, x{speedup:.2f}"
    )
    workers = set(Task.objects.exclude(pk__in=first_ids).values_list("runs__worker", flat=True))
    assert len(workers) >= 3, workers  # one cluster has two worker processes
    assert speedup > 1.4, f"two clusters were only x{speedup:.2f} faster"
    assert problems(list(Task.objects.values_list("pk", flat=True)), smtp, range(2 * count)) == []


def test_a_whole_cluster_killed_mid_burst_loses_nothing_and_repeats_nothing(
    model_server,
    smtp,  # noqa: F811
    cluster_env,
):
    employee = _mailer()
    script(model_server, MODEL_DELAY)
    survivor, doomed = (
        Cluster(cluster_env, command=SUPERVISED),
        Cluster(cluster_env, command=SUPERVISED),
    )
    try:
        ids = burst(employee, 20)
        doomed.wait_for(
            lambda: Task.objects.filter(status=TaskStatus.DONE).count() >= 4, "some progress"
        )
        doomed.kill()  # the whole machine: main process, workers, the jobs it had taken
        wait_done(ids, [survivor], timeout=90, recover=True)
    finally:
        survivor.stop()
    assert problems(ids, smtp, range(20)) == []
    # The killed machine's workers were mid-task: their runs were lost and taken over.
    assert lost_runs(ids) > 0
