"""The recall query reads two partitions (the employee's own memories, its team's) and walks
each one's HNSW graph; a selective filter within a partition still gets k exact rows."""

from __future__ import annotations

import random
import re

import pytest
from django.db import connection

from employees.memory.embeddings import OfflineEmbedder
from employees.memory.recall import recall_sql, set_search_options
from employees.memory.vectors import vector_literal
from employees.models import MemoryEntry, MemoryScope
from tests.factories import EmployeeFactory, TeamFactory

K = 10
CUSTOMERS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Wonka", "Tyrell", "Oscorp"]
PRODUCTS = ["VPN client", "invoice portal", "payroll export", "mobile app", "shared drive"]
PROBLEMS = ["stopped syncing", "charged twice", "timed out at login", "lost attachments"]
PARTITION = re.compile(r"employees_memoryentry_[et]\d+")


def _texts(rng: random.Random, count: int) -> list[str]:
    return [
        f"Ticket #{rng.randint(10_000, 99_999)}: {rng.choice(CUSTOMERS)} says the "
        f"{rng.choice(PRODUCTS)} {rng.choice(PROBLEMS)}; refund of ${rng.randint(10, 990)}."
        for _ in range(count)
    ]


@pytest.fixture
def populated(db):
    """3,000 memories: a busy team sees 60% of them (3% of its shared ones are lessons, the
    rest facts), a quiet employee 2% (1% its own, 1% its team's), the rest belong to other
    employees; analysed, as autovacuum would leave them."""
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
            MemoryEntry(kind="lesson" if n % 33 == 0 else "fact", text=text, embedding=vector, **o)
            for n, (o, text, vector) in enumerate(zip(owners, texts, vectors, strict=True))
        ],
        batch_size=500,
    )
    with connection.cursor() as cursor:
        # The partitions (and their graphs) were created with these owners, in this test's
        # transaction: they hold no rolled-back rows of earlier tests.
        cursor.execute("ANALYZE employees_memoryentry")
    return busy, quiet


def _params(employee, query: str, kinds: list[str] | None = None) -> dict:
    vector = OfflineEmbedder().embed([query])[0]
    return {
        "query": vector_literal(vector),
        "employee": employee.pk,
        "team": employee.team_id,
        "k": K,
        "kinds": kinds,
    }


def _plan(cursor, params: dict) -> str:
    cursor.execute("EXPLAIN " + recall_sql(kinds=params["kinds"]), params)
    return "\n".join(row[0] for row in cursor.fetchall())


def _recall(cursor, params: dict) -> list[tuple[int, float]]:
    cursor.execute(recall_sql(kinds=params["kinds"]), params)
    return [(row[0], row[5]) for row in cursor.fetchall()]


def _hnsw_scans(plan: str) -> list[str]:
    """The partitions whose HNSW graph the plan walks."""
    return re.findall(r"Index Scan using (employees_memoryentry_[et]\d+)_embedding_idx", plan)


def _exact(cursor, params: dict) -> list[tuple[int, float]]:
    """The same statement without index scans: every visible row, sorted by distance."""
    cursor.execute("SET LOCAL enable_indexscan = off")
    assert not _hnsw_scans(_plan(cursor, params))
    rows = _recall(cursor, params)
    cursor.execute("RESET enable_indexscan")
    return rows


def _walk_the_index(cursor) -> None:
    """Price the other paths out. At a few thousand rows the planner rightly prefers reading
    the partition (by scan or a btree index) plus a sort over the HNSW index; on a big table
    it walks the index (benchmarks/memory.py shows where). Here the test wants the index's
    answer."""
    for path in ("seqscan", "bitmapscan", "sort"):
        cursor.execute(f"SET LOCAL enable_{path} = off")


def _back_to_normal(cursor) -> None:
    for path in ("seqscan", "bitmapscan", "sort"):
        cursor.execute(f"RESET enable_{path}")


def test_recall_reads_only_the_partitions_of_the_employee_and_its_team(populated):
    """The other 21 owners' partitions are pruned when the statement is planned."""
    _, quiet = populated
    with connection.cursor() as cursor:
        plan = _plan(cursor, _params(quiet, "Globex was charged twice"))
    assert set(PARTITION.findall(plan)) == {
        f"employees_memoryentry_e{quiet.pk}",
        f"employees_memoryentry_t{quiet.team_id}",
    }, plan


def test_recall_query_walks_the_hnsw_index(populated):
    """The SQL's shape lets the index answer it: `<=>` under the cosine opclass, ORDER BY the
    distance with LIMIT k in each partition's branch, no sort of the partition's rows."""
    busy, _ = populated
    params = _params(busy, "Acme says the VPN client stopped syncing")
    with connection.cursor() as cursor:
        _walk_the_index(cursor)
        plan = _plan(cursor, params)
        assert sorted(_hnsw_scans(plan)) == [
            f"employees_memoryentry_e{busy.pk}",
            f"employees_memoryentry_t{busy.team_id}",
        ], plan
        # Only the 2k rows of the branches are sorted, never a partition's rows by distance.
        assert "Sort Key: nearest.distance" in plan, plan
        assert "embedding <=>" not in "".join(re.findall(r"Sort Key: .{40}", plan)), plan
        found = _recall(cursor, params)
        _back_to_normal(cursor)
        exact = _exact(cursor, params)
    assert len(found) == K
    assert {pk for pk, _ in found} == {pk for pk, _ in exact}


def test_selective_filter_still_returns_k_exact_rows_through_the_index(populated):
    """Lessons are 3% of the busy team's partition: the iterative scan steps past the rows
    the filter rejects until k pass, and they are the exact k nearest lessons."""
    busy, _ = populated
    params = _params(busy, "Globex was charged twice for the invoice portal", kinds=["lesson"])
    with connection.cursor() as cursor:
        _walk_the_index(cursor)
        set_search_options(cursor, ef_search=40)
        assert len(_hnsw_scans(_plan(cursor, params))) == 2
        found = _recall(cursor, params)
        _back_to_normal(cursor)
        exact = _exact(cursor, params)
    assert len(found) == K
    assert {pk for pk, _ in found} == {pk for pk, _ in exact}
    lessons = MemoryEntry.objects.filter(
        kind="lesson", team=busy.team
    ) | MemoryEntry.objects.filter(kind="lesson", employee=busy)
    assert {pk for pk, _ in found} <= set(lessons.values_list("pk", flat=True))


def test_without_iterative_scans_the_selective_filter_comes_up_short(populated):
    """Why connections turn iterative scans on: one ef_search-sized walk finds too few rows."""
    busy, _ = populated
    params = _params(busy, "Globex was charged twice for the invoice portal", kinds=["lesson"])
    with connection.cursor() as cursor:
        _walk_the_index(cursor)
        cursor.execute("SET LOCAL hnsw.iterative_scan = off")
        cursor.execute("SET LOCAL hnsw.ef_search = 40")
        assert len(_recall(cursor, params)) < K


def _partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent IN "
            "('employees_memoryentry'::regclass, 'employees_memoryentry_shared'::regclass)"
        )
        return {row[0] for row in cursor.fetchall()}


def test_a_partition_comes_with_its_owner_and_goes_after_it(db):
    """Made with the employee or team (whoever inserts it); the empty partition of a deleted
    owner is dropped by run_due's pass, not by the transaction that deleted the owner."""
    from employees.memory.partitions import memory_partitions_drop_orphaned
    from tasks.jobs import run_due

    team = TeamFactory()
    employee = EmployeeFactory(team=team)
    own, shared = f"employees_memoryentry_e{employee.pk}", f"employees_memoryentry_t{team.pk}"
    assert {own, shared} <= _partitions()
    MemoryEntry.objects.create(scope=MemoryScope.EMPLOYEE, employee=employee, kind="fact", text="x")
    MemoryEntry.objects.create(scope=MemoryScope.TEAM, team=team, kind="fact", text="y")
    employee.delete()  # Django deletes its memories with it
    assert own in _partitions() and MemoryEntry.objects.filter(team=team).count() == 1
    assert run_due()["dropped_memory_partitions"] == 1
    assert own not in _partitions() and shared in _partitions()
    team.delete()
    assert memory_partitions_drop_orphaned() == 1
    assert shared not in _partitions() and not MemoryEntry.objects.exists()


def test_a_partition_still_holding_rows_is_not_dropped(db):
    from employees.memory.partitions import memory_partitions_drop_orphaned

    employee = EmployeeFactory()
    MemoryEntry.objects.create(scope=MemoryScope.EMPLOYEE, employee=employee, kind="fact", text="x")
    with connection.cursor() as cursor:  # deleted behind Django's back: its memory stays
        cursor.execute("DELETE FROM employees_employee WHERE id = %s", [employee.pk])
    assert memory_partitions_drop_orphaned() == 0
    assert f"employees_memoryentry_e{employee.pk}" in _partitions()


def test_up_makes_the_partitions_an_owner_is_missing(db):
    from employees.memory.partitions import memory_partitions_ensure

    employee = EmployeeFactory()
    own = f"employees_memoryentry_e{employee.pk}"
    with connection.cursor() as cursor:  # as after a restore that skipped triggers
        cursor.execute(f"DROP TABLE {own}")
    assert memory_partitions_ensure() == 1
    assert own in _partitions()
    MemoryEntry.objects.create(scope=MemoryScope.EMPLOYEE, employee=employee, kind="fact", text="x")
    assert memory_partitions_ensure() == 0


@pytest.mark.django_db(transaction=True)
def test_hiring_does_not_stop_memory_reads_and_writes():
    """Another session makes partitions (as the hiring trigger does) and has not committed:
    recall and remembering go on here, without waiting for its locks. (Two hires do wait for
    each other: attaching takes SHARE UPDATE EXCLUSIVE on the parent.)"""
    import psycopg

    employee = EmployeeFactory()  # committed: its own partition's locks are gone
    params = connection.get_connection_params()
    hiring = psycopg.connect(
        **{
            key: params[key]
            for key in ("dbname", "host", "port", "user", "password")
            if key in params
        }
    )
    try:
        hiring.execute("SELECT employees_memory_partition_create('employee', 987654321)")
        hiring.execute("SELECT employees_memory_partition_create('team', 987654321)")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
            cursor.execute(recall_sql(), _params(employee, "anything"))
            MemoryEntry.objects.create(
                scope=MemoryScope.EMPLOYEE, employee=employee, kind="fact", text="Still writing."
            )
            cursor.execute("SELECT count(*) FROM employees_memoryentry")
            assert cursor.fetchone()[0] == 1
            cursor.execute("RESET lock_timeout")
    finally:
        hiring.rollback()
        hiring.close()


@pytest.mark.django_db(transaction=True)
def test_the_partitioning_migration_keeps_rows_and_ids_both_ways():
    """Back to one table and forward to partitions again: every row stays in its owner's
    place, and ids deleted before never come back (old tasks and the audit name them)."""
    from django.db.migrations.executor import MigrationExecutor

    employee = EmployeeFactory()
    kept = MemoryEntry.objects.create(
        scope=MemoryScope.EMPLOYEE, employee=employee, kind="fact", text="Kept."
    )
    shared = MemoryEntry.objects.create(
        scope=MemoryScope.TEAM, team=employee.team, kind="fact", text="Shared."
    )
    deleted = MemoryEntry.objects.create(
        scope=MemoryScope.TEAM, team=employee.team, kind="fact", text="Deleted."
    )
    deleted_id = deleted.pk
    deleted.delete()

    def migrate(name: str | None) -> None:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        # None: every app forward to its latest migration (going back to 0005 also unapplied
        # whatever came after 0006, in this app and in those depending on it).
        targets = [("employees", name)] if name else executor.loader.graph.leaf_nodes()
        executor.migrate(targets)

    def rows() -> set[tuple]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tableoid::regclass::text, id, text FROM employees_memoryentry")
            return set(cursor.fetchall())

    try:
        migrate("0005_memory_foreign_keys_in_django_only")
        assert rows() == {
            ("employees_memoryentry", kept.pk, "Kept."),
            ("employees_memoryentry", shared.pk, "Shared."),
        }
    finally:
        migrate(None)
    assert rows() == {
        (f"employees_memoryentry_e{employee.pk}", kept.pk, "Kept."),
        (f"employees_memoryentry_t{employee.team_id}", shared.pk, "Shared."),
    }
    again = MemoryEntry.objects.create(
        scope=MemoryScope.EMPLOYEE, employee=employee, kind="fact", text="New."
    )
    assert again.pk > deleted_id
