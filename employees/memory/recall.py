"""Recall: the k memories nearest to a query that an employee may see, from its partitions.

Recall ranks by cosine distance on the HNSW index, filtered by scope, liveness and expiry, with
pgvector's iterative index scans so a selective filter still returns k results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from employees.memory.embeddings import get_embedder
from employees.memory.partitions import EMPLOYEE_PARTITION_SQL, TEAM_PARTITION_SQL
from employees.memory.selectors import memories_readable_by
from employees.memory.vectors import check_embedding_dimensions, vector_literal
from employees.models import Employee


@dataclass(frozen=True)
class Recalled:
    id: int
    kind: str
    text: str
    source: str
    distance: float
    details: dict

    def as_payload(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "source": self.source,
            "distance": round(self.distance, 4),
            "details": self.details,
        }


# The inner query walks the HNSW index in distance order, filtering as it goes; with iterative
# scans it keeps walking until k rows pass the filter. "relaxed_order" may return them slightly
# out of order, so the outer query sorts the k rows again (pgvector's documented pattern).
# One branch per partition the employee may read (its own, its team's: see migration 0006);
# each walks that partition's HNSW graph for its k nearest, and the k nearest of both win.
_RECALL_BRANCH = """
    (SELECT m.id, m.kind, m.text, m.source, m.details,
            m.embedding <=> %(query)s::vector AS distance
     FROM employees_memoryentry m
     WHERE {owner} AND m.embedding IS NOT NULL AND m.live
       AND (m.expires_at IS NULL OR m.expires_at > now()) {kinds}
     ORDER BY m.embedding <=> %(query)s::vector
     LIMIT %(k)s)"""


def recall_sql(*, kinds: list[str] | None = None) -> str:
    kinds_filter = "AND m.kind = ANY(%(kinds)s)" if kinds else ""
    own, teams = (
        _RECALL_BRANCH.format(owner=o, kinds=kinds_filter)
        for o in (EMPLOYEE_PARTITION_SQL, TEAM_PARTITION_SQL)
    )
    # Only constant fragments are put together; every value is a parameter.
    return f"""WITH nearest AS MATERIALIZED ({own}
    UNION ALL{teams}
)
SELECT id, kind, text, source, details, distance FROM nearest
ORDER BY distance, id LIMIT %(k)s"""  # noqa: S608


def set_search_options(cursor, *, ef_search: int | None = None) -> None:
    """Other hnsw.ef_search for the current transaction (connections default to the setting)."""
    cursor.execute(
        "SELECT set_config('hnsw.ef_search', %s, true), "
        "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
        [str(ef_search or settings.MEMORY_EF_SEARCH)],
    )


def memory_recall(
    *, employee: Employee, query: str, k: int, kinds: list[str] | None = None
) -> list[Recalled]:
    """The k memories nearest to `query` that this employee may see: its own and its team's."""
    if k <= 0 or not query.strip():
        return []
    check_embedding_dimensions()
    embedder = get_embedder()
    if not embedder.local and not _has_memories(employee):
        return []  # no call to the embedding endpoint for nothing
    vector = embedder.embed([query[:8000]])[0]
    params = {
        "query": vector_literal(vector),
        "employee": employee.pk,
        "team": employee.team_id,
        "k": k,
        "kinds": kinds,
    }
    # hnsw.ef_search and iterative scans are set on every connection (settings.DATABASES).
    with connection.cursor() as cursor:
        cursor.execute(recall_sql(kinds=kinds), params)
        rows = cursor.fetchall()
    return [
        Recalled(id=r[0], kind=r[1], text=r[2], source=r[3], details=_json(r[4]), distance=r[5])
        for r in rows
    ]


def _has_memories(employee: Employee) -> bool:
    own, team = memories_readable_by(employee)
    return own.exists() or team.exists()


def _json(value) -> dict:
    # Django's psycopg setup hands jsonb to Python as text (JSONField decodes it itself).
    return json.loads(value) if isinstance(value, str) else (value or {})
