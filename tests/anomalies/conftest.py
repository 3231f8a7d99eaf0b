"""Fixtures of the anomaly rules' real-worker tests: one django-q2 cluster per module.

One cluster per module keeps these tests quick: it starts once and stops once. Each test
leaves it idle (no job queued, no task running) before the database is flushed for the next.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.anomalies.workers")

from django_q.models import OrmQ, Schedule  # noqa: E402

from employees.models import TeamRole  # noqa: E402
from tasks.models import Task, TaskStatus  # noqa: E402
from tests.aiworkforce.helpers import clean_env  # noqa: E402
from tests.anomalies.workers import wait_for  # noqa: E402
from tests.factories import MembershipFactory, TeamFactory, UserFactory  # noqa: E402
from tests.fakes.cluster import Cluster, database_url_for_workers  # noqa: E402
from tests.fakes.smtp_server import FakeSMTPServer  # noqa: E402


@pytest.fixture(scope="module")
def _smtp_server():
    with FakeSMTPServer() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(django_db_setup, _model_server, _smtp_server):
    """Two workers against the test database, the fake model endpoint and the fake mail relay."""
    env = clean_env(
        DATABASE_URL=database_url_for_workers(),
        OPENAI_API_KEY="sk-test-not-a-real-key",
        OPENAI_BASE_URL=_model_server.base_url,
        LLM_MAX_RETRIES="0",
        TASK_LEASE_SECONDS="5",
        Q_WORKERS="2",
        Q_TIMEOUT="20",
        Q_RETRY="30",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(_smtp_server.port),
    )
    running = Cluster(env)
    yield running
    running.stop()


@pytest.fixture
def smtp(_smtp_server):
    with _smtp_server.lock:
        _smtp_server.received.clear()
    return _smtp_server


@pytest.fixture
def workers(cluster, model_server, smtp):
    """The shared cluster, idle again when the test ends."""
    # Only the passes a test asks for: the migrations' every-minute schedules would add their
    # own (a transactional test flushes them anyway).
    Schedule.objects.all().delete()
    yield cluster
    # Let the test's last jobs end before the flush, so none writes into the next test.
    model_server.reset()
    wait_for(
        lambda: (
            not OrmQ.objects.exists()
            and not Task.objects.filter(status__in=[TaskStatus.RUNNING, TaskStatus.QUEUED]).exists()
        ),
        "the cluster to be idle",
        cluster,
    )


@pytest.fixture
def manager(db):
    """A team's manager: sees its employees on the dashboard, gets their mail, resumes them."""
    team = TeamFactory(name="Support")
    user = UserFactory(username="support-boss", email="boss@example.com")
    MembershipFactory(team=team, user=user, role=TeamRole.MANAGER)
    return user
