"""The recall query walks the HNSW index, and a selective scope filter still gets k exact rows."""

from __future__ import annotations

import random

import pytest
from django.db import connection

from employees.embeddings import OfflineEmbedder
from employees.memory import recall_sql, set_search_options, vector_literal
from employees.models import MemoryEntry, MemoryScope
from tests.conftest import EmployeeFactory, TeamFactory

HNSW_INDEX = "memory_embedding_hnsw_cosine"
K = 10
CUSTOMERS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Wonka", "Tyrell", "Oscorp"]
PRODUCTS = ["VPN client", "invoice portal", "payroll export", "mobile app", "shared drive"]
PROBLEMS = ["stopped syncing", "charged twice", "timed out at login", "lost attachments"]


def _texts(rng: random.Random, count: int) -> list[str]:
    return [
        f"Ticket #{rng.randint(10_000, 99_999)}: {rng.choice(CUSTOMERS)} says the "
        f"{rng.choice(PRODUCTS)} {rng.choice(PROBLEMS)}; refund of ${rng.randint(10, 990)}."
        for _ in range(count)
    ]


@pytest.fixture
def populated(db):
    """3,000 memories: a busy team sees 60% of them, a quiet employee 2% (1% its own, 1% its
    team's), the rest belong to other employees; analysed, as autovacuum would leave them."""
    rng = random.Random(7)
    busy_team, quiet_team = TeamFactory(), TeamFactory()
    busy = EmployeeFactory(team=busy_team)
    quiet = EmployeeFactory(team=quiet_team)
    others = [EmployeeFactory(team=TeamFactory()) for _ in range(20)]
    owners = (
        [{"scope": MemoryScope.TEAM, "team": busy_team}] * 1500
        + [{"scope": MemoryScope.EMPLOYEE, "employee": busy}] * 300
        + [{"scope": MemoryScope.EMPLOYEE, "employee": quiet}] * 30
        + [{"scope": MemoryScope.TEAM, "team": quiet_team}] * 30
        + [{"scope": MemoryScope.EMPLOYEE, "employee": rng.choice(others)} for _ in range(1140)]
    )
    texts = _texts(rng, len(owners))
    vectors = OfflineEmbedder().embed(texts)
    MemoryEntry.objects.bulk_create(
        [
            MemoryEntry(kind="fact", text=text, embedding=vector, **owner)
            for owner, text, vector in zip(owners, texts, vectors, strict=True)
        ],
        batch_size=500,
    )
    with connection.cursor() as cursor:
        # The graph holds only these rows, not the rolled-back rows of earlier tests (an HNSW
        # index keeps dead elements until VACUUM; they would use up the iterative scan).
        cursor.execute(f"REINDEX INDEX {HNSW_INDEX}")
        cursor.execute("ANALYZE employees_memoryentry")
    return busy, quiet


def _params(employee, query: str) -> dict:
    vector = OfflineEmbedder().embed([query])[0]
    return {
        "query": vector_literal(vector),
        "employee": employee.pk,
        "team": employee.team_id,
        "k": K,
        "kinds": None,
    }


def _plan(cursor, params: dict) -> str:
    cursor.execute("EXPLAIN " + recall_sql(), params)
    return "\n".join(row[0] for row in cursor.fetchall())


def _recall(cursor, params: dict) -> list[tuple[int, float]]:
    cursor.execute(recall_sql(), params)
    return [(row[0], row[5]) for row in cursor.fetchall()]


def _exact(cursor, params: dict) -> list[tuple[int, float]]:
    """The same statement without index scans: every visible row, sorted by distance."""
    cursor.execute("SET LOCAL enable_indexscan = off")
    assert HNSW_INDEX not in _plan(cursor, params)
    rows = _recall(cursor, params)
    cursor.execute("RESET enable_indexscan")
    return rows


def _walk_the_index(cursor) -> None:
    """Price the other paths out. At a few thousand rows the planner rightly prefers a scan
    (or the btree indexes) plus a sort over the HNSW index; on a big table it walks the
    index (benchmarks/memory.py shows where). Here the test wants the index's answer."""
    cursor.execute("SET LOCAL enable_seqscan = off")
    cursor.execute("SET LOCAL enable_bitmapscan = off")


def _back_to_normal(cursor) -> None:
    cursor.execute("RESET enable_seqscan")
    cursor.execute("RESET enable_bitmapscan")


def test_recall_query_walks_the_hnsw_index(populated):
    """The SQL's shape lets the index answer it: `<=>` under the cosine opclass, ORDER BY the
    distance with LIMIT k inside the CTE, the filter applied while walking."""
    busy, _ = populated
    params = _params(busy, "Acme says the VPN client stopped syncing")
    with connection.cursor() as cursor:
        _walk_the_index(cursor)
        plan = _plan(cursor, params)
        assert f"Index Scan using {HNSW_INDEX}" in plan, plan
        assert "Sort" not in plan.split("CTE nearest")[1].split("CTE Scan")[0], plan
        found = _recall(cursor, params)
        _back_to_normal(cursor)
        exact = _exact(cursor, params)
    assert len(found) == K
    assert {pk for pk, _ in found} == {pk for pk, _ in exact}


def test_selective_filter_still_returns_k_exact_rows_through_the_index(populated):
    """An owner seeing 2% of the table: the iterative scan steps past the rows the filter
    rejects until k pass, and they are the exact k nearest of that owner's memories."""
    _, quiet = populated
    params = _params(quiet, "Globex was charged twice for the invoice portal")
    with connection.cursor() as cursor:
        _walk_the_index(cursor)
        set_search_options(cursor, ef_search=400)
        assert f"Index Scan using {HNSW_INDEX}" in _plan(cursor, params)
        found = _recall(cursor, params)
        _back_to_normal(cursor)
        exact = _exact(cursor, params)
    assert len(found) == K
    assert {pk for pk, _ in found} == {pk for pk, _ in exact}
    visible = MemoryEntry.objects.filter(employee=quiet) | MemoryEntry.objects.filter(
        team=quiet.team
    )
    assert {pk for pk, _ in found} <= set(visible.values_list("pk", flat=True))


def test_without_iterative_scans_the_selective_filter_comes_up_short(populated):
    """Why connections turn iterative scans on: one ef_search-sized walk finds too few rows."""
    _, quiet = populated
    params = _params(quiet, "Globex was charged twice for the invoice portal")
    with connection.cursor() as cursor:
        _walk_the_index(cursor)
        cursor.execute("SET LOCAL hnsw.iterative_scan = off")
        cursor.execute("SET LOCAL hnsw.ef_search = 40")
        assert len(_recall(cursor, params)) < K
