"""django-q2 jobs of the memory: thin, take ids, and are safe to run twice."""

from __future__ import annotations


def embed_pending_memories() -> int:
    """Embed the memories stored without a vector (an embedding endpoint is configured)."""
    from employees.memory.services import memories_embed_pending

    return memories_embed_pending()


def ingest_document(document_id: int) -> str:
    """Read an uploaded document into memory chunks, with progress; see employees.memory.ingest."""
    from employees.memory.ingest import document_ingest

    return document_ingest(document_id)
