"""Re-embed every memory with the current embedder (after changing embedder, model or size).

    ./workforce manage reembed_memory              # every memory
    ./workforce manage reembed_memory --stale-only # only those another embedder made
    ./workforce manage reembed_memory --resize     # MEMORY_EMBEDDING_DIMENSIONS changed

Work is committed batch by batch, so an interrupted run loses nothing: run it again with
--stale-only to finish. While a --resize runs, memories not yet re-embedded are not recalled.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from aiworkforce.audit import Actor, audit_log
from employees.memory.embeddings import EmbeddingError, get_embedder
from employees.memory.services import STORE_FIELDS, memories_store_vectors
from employees.memory.vectors import (
    MemoryConfigurationError,
    check_embedding_dimensions,
    forget_cached_dimensions,
)
from employees.models import MemoryEntry

INDEX = "memory_embedding_hnsw_cosine"


class Command(BaseCommand):
    help = "Re-embed memories with the current embedder, showing progress."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--stale-only",
            action="store_true",
            help="Only memories with no vector or one made by another embedder.",
        )
        parser.add_argument(
            "--resize",
            action="store_true",
            help="Rebuild the vector column and index for MEMORY_EMBEDDING_DIMENSIONS first.",
        )
        parser.add_argument("--batch", type=int, default=256, help="Memories per batch (256).")

    def handle(self, *args, stale_only: bool, resize: bool, batch: int, **options) -> None:
        if batch < 1:
            raise CommandError("--batch must be at least 1.")
        if resize:
            self._resize()
        try:
            check_embedding_dimensions()
        except MemoryConfigurationError as exc:
            raise CommandError(str(exc)) from None
        embedder = get_embedder()
        memories = MemoryEntry.objects.all()
        if stale_only:
            memories = memories.exclude(embedder=embedder.name, embedding__isnull=False)
        total = memories.count()
        self.stdout.write(f"Re-embedding {total:,} memories with {embedder.name}.")
        try:
            done, started = self._reembed(memories, embedder, batch, total)
        finally:
            # After a --resize, even an interrupted run leaves the index in place (recall
            # without it falls back to a sequential scan); IF NOT EXISTS makes this cheap.
            self._build_index()
        audit_log(
            action="memory.reembedded",
            actor=Actor.system("reembed_memory"),
            subject=None,
            data={"memories": done, "embedder": embedder.name, "resized": resize},
        )
        self.stdout.write(
            self.style.SUCCESS(f"Done: {done:,} memories in {time.monotonic() - started:.1f} s.")
        )

    def _reembed(self, memories, embedder, batch: int, total: int) -> tuple[int, float]:
        done, started, last_id = 0, time.monotonic(), 0
        while True:
            rows = list(
                memories.filter(pk__gt=last_id).order_by("pk").values_list(*STORE_FIELDS)[:batch]
            )
            if not rows:
                break
            try:
                vectors = embedder.embed([row[1] for row in rows])
            except EmbeddingError as exc:
                raise CommandError(
                    f"{exc} {done:,} of {total:,} were re-embedded and kept; run again with "
                    "--stale-only to finish."
                ) from None
            memories_store_vectors(rows=rows, vectors=vectors, embedder=embedder)
            done += len(rows)
            last_id = rows[-1][0]
            self._progress(done, total, started)
        return done, started

    def _progress(self, done: int, total: int, started: float) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = done / elapsed
        left = (total - done) / rate if rate and total > done else 0
        percent = 100 * done / total if total else 100
        self.stdout.write(
            f"  {done:,}/{total:,} ({percent:.0f}%) · {rate:,.0f}/s · about {left:.0f} s left"
        )
        self.stdout.flush()

    def _resize(self) -> None:
        size = settings.MEMORY_EMBEDDING_DIMENSIONS
        self.stdout.write(f"Rebuilding the memory vector column for {size} dimensions.")
        with transaction.atomic(), connection.cursor() as cursor:
            # Deferred foreign-key checks would make ALTER TABLE refuse; run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"DROP INDEX IF EXISTS {INDEX}")
            cursor.execute(
                "ALTER TABLE employees_memoryentry "
                f"ALTER COLUMN embedding TYPE vector({int(size)}) USING NULL"
            )
            cursor.execute("UPDATE employees_memoryentry SET embedder = ''")
        forget_cached_dimensions()

    def _build_index(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # see _resize
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {INDEX} ON employees_memoryentry "
                "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
            )
