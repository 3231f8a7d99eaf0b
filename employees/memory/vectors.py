"""The memory column's vectors: their size checked against the settings, and their SQL text form."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.db import connection
from pgvector import Vector


class MemoryConfigurationError(RuntimeError):
    """The deployment's embedding settings do not match the database."""


@lru_cache(maxsize=1)
def _column_dimensions() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = 'employees_memoryentry'::regclass AND attname = 'embedding'"
        )
        row = cursor.fetchone()
    return row[0] if row and row[0] > 0 else None


def check_embedding_dimensions() -> None:
    """Stop with a clear message when the column was built for another vector size."""
    column = _column_dimensions()
    wanted = settings.MEMORY_EMBEDDING_DIMENSIONS
    if column is not None and column != wanted:
        raise MemoryConfigurationError(
            f"MEMORY_EMBEDDING_DIMENSIONS is {wanted} but the memory table stores vectors of "
            f"{column} dimensions. Set it back to {column}, or run "
            "`./workforce manage reembed_memory --resize` to rebuild the column and index "
            f"for {wanted} and re-embed every memory."
        )


def forget_cached_dimensions() -> None:
    _column_dimensions.cache_clear()


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form, for raw SQL (`%s::vector`)."""
    return Vector(vector).to_text()
