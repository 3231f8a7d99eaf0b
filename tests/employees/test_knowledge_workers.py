"""With a real django-q2 worker cluster: a document whose reading worker is killed half-way is
read again, completely and once, after `run_due` finds it stalled."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_q.models import OrmQ

from aiworkforce.models import AuditEntry
from employees.memory.ingest import EMBED_BATCH, document_upload
from employees.models import DocumentStatus, KnowledgeDocument, MemoryEntry
from tasks.jobs import run_due
from tests.aiworkforce.helpers import clean_env
from tests.factories import EmployeeFactory
from tests.fakes.cluster import Cluster
from tests.fakes.openai_server import FakeOpenAIServer
from tests.tasks.test_workers import _test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

SECTIONS = 2 * EMBED_BATCH + 6  # three embedding batches at 200 characters a chunk


class _StallingEmbeddings:
    """Answers the first embedding request, then holds the next ones until released."""

    def __init__(self, server: FakeOpenAIServer) -> None:
        self.answer = server._embeddings
        self.calls = 0
        self.stalled = threading.Event()
        self.release = threading.Event()

    def __call__(self, body: dict) -> dict:
        self.calls += 1
        if self.calls > 1 and not self.release.is_set():
            self.stalled.set()
            self.release.wait(30)
        return self.answer(body)


def _wait(condition, what: str, cluster: Cluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{''.join(cluster.output[-40:])}")


def test_a_document_whose_worker_was_killed_mid_read_is_read_again_by_run_due(settings):
    text = "\n\n".join(f"# Part {i}\nRefund rule number {i} applies." for i in range(SECTIONS))
    with FakeOpenAIServer() as server:
        embeddings = _StallingEmbeddings(server)
        server._embeddings = embeddings
        env = clean_env(
            DATABASE_URL=_test_database_url(),
            OPENAI_API_KEY="sk-test-not-a-real-key",
            OPENAI_BASE_URL=server.base_url,
            MEMORY_EMBEDDING_MODEL="text-embedding-3-small",
            MEMORY_CHUNK_CHARS="200",
            MEMORY_CHUNK_OVERLAP="0",
            LLM_MAX_RETRIES="0",
            Q_WORKERS="1",
            Q_TIMEOUT="300",
            Q_RETRY="600",  # django-q2 would only redeliver after ten minutes
        )
        employee = EmployeeFactory()
        document = document_upload(
            owner=employee,
            uploaded_file=SimpleUploadedFile("refunds.md", text.encode()),
            user=None,
        )
        cluster = Cluster(env)
        try:
            _wait(embeddings.stalled.is_set, "the second embedding batch", cluster)
            cluster.kill()  # the worker dies holding the document "Reading"
        finally:
            cluster.stop()
            embeddings.release.set()
        document.refresh_from_db()
        assert document.status == DocumentStatus.PROCESSING
        assert document.get_status_display() == "Reading"
        assert (document.chunks_total, document.chunks_done) == (SECTIONS, EMBED_BATCH)

        OrmQ.objects.all().delete()  # and the job is lost with the queue
        assert run_due()["resumed_documents"] == 0  # not yet: it may still be redelivered
        quiet = timedelta(seconds=settings.Q_CLUSTER["retry"] + 61)
        KnowledgeDocument.objects.filter(pk=document.pk).update(updated_at=timezone.now() - quiet)
        assert run_due()["resumed_documents"] == 1

        cluster = Cluster(env)
        try:
            _wait(
                lambda: (
                    KnowledgeDocument.objects.get(pk=document.pk).status == DocumentStatus.READY
                ),
                "the document to be read again",
                cluster,
            )
        finally:
            cluster.stop()
    chunks = MemoryEntry.objects.filter(document=document.pk)
    assert chunks.count() == SECTIONS and not chunks.filter(live=False).exists()
    assert sorted(chunks.values_list("chunk_index", flat=True)) == list(range(SECTIONS))
    assert AuditEntry.objects.filter(action="knowledge.ingested").count() == 1
