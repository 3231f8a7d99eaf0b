"""The fault drill of `./workforce bench faults`, smaller: worker processes of a supervised
cluster are killed at random while tasks e-mail (outbox, real SMTP) and refund (a destructive
tool of a real MCP server); nothing is lost, nothing is done twice, and work never stalls for
a minute."""

from __future__ import annotations

import pytest

from benchmarks.faults import run_faults
from tests.aiworkforce.helpers import clean_env
from tests.fakes.cluster import database_url_for_workers as _test_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_killing_workers_at_random_loses_nothing_and_does_nothing_twice(model_server, tmp_path):
    report = run_faults(
        tasks=20,
        kills=10,
        interval=(1.0, 2.0),
        waves=2,
        base_env=clean_env(DATABASE_URL=_test_database_url(), Q_WORKERS="2"),
        model_server=model_server,
        state_dir=tmp_path,
        stall_seconds=8,
        settle_seconds=60,
        log=lambda line: None,
    )
    details = "\n".join([*report.lines, report.summary()])
    assert report.kills == 10, details
    assert report.done == 20, details
    assert report.duplicated == 0, details
    assert report.lost == 0, details
    assert report.audit_breaks == 0, details
    assert report.longest_stall < 60, details
