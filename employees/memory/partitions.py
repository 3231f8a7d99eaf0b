"""The memory table's partitions: one per employee and one per team (migration 0006).

A trigger makes an owner's partition when the owner is inserted. These two functions keep the
set right around it: `up` makes any that are missing (after a restore that skipped triggers,
say), and run_due drops the empty partitions of deleted owners.
"""

from __future__ import annotations

import logging

from django.db import OperationalError, connection, transaction

logger = logging.getLogger(__name__)

PARENT = "employees_memoryentry"
SHARED = "employees_memoryentry_shared"

# WHERE fragments (table alias `m`) naming one owner's partition: with the owner's columns as
# constants PostgreSQL reads that partition alone (by id alone it would plan and probe every
# partition). The `employee_id IS NULL` is what prunes a team's fragment to the team's partition.
EMPLOYEE_PARTITION_SQL = "m.employee_id = %(employee)s"
TEAM_PARTITION_SQL = "m.employee_id IS NULL AND m.team_id = %(team)s"

_ENSURE_SQL = """
SELECT employees_memory_partition_create(owner, id)
FROM (
    SELECT 'employee' AS owner, id, 'employees_memoryentry_e' || id AS leaf
    FROM employees_employee
    UNION ALL
    SELECT 'team', id, 'employees_memoryentry_t' || id FROM employees_team
) owners
WHERE to_regclass(leaf) IS NULL
"""

# Partitions whose owner is gone. Their names are the catalog's, matched to a strict pattern.
_ORPHANS_SQL = f"""
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = '{PARENT}'::regclass AND c.relname ~ '^{PARENT}_e[0-9]+$'
  AND NOT EXISTS (SELECT 1 FROM employees_employee e WHERE c.relname = '{PARENT}_e' || e.id)
UNION ALL
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = '{SHARED}'::regclass AND c.relname ~ '^{PARENT}_t[0-9]+$'
  AND NOT EXISTS (SELECT 1 FROM employees_team t WHERE c.relname = '{PARENT}_t' || t.id)
"""  # noqa: S608 - constants only


def memory_partitions_ensure() -> int:
    """Make the partition of every employee and team that lacks one; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(_ENSURE_SQL)
        return cursor.rowcount


def memory_partitions_drop_orphaned(*, lock_timeout: str = "1s") -> int:
    """Drop the empty partitions of deleted employees and teams; returns how many.

    DROP TABLE locks the whole memory table, so each drop is a transaction of its own that
    gives up after `lock_timeout` (the next pass tries again), never part of the transaction
    that deleted the owner. A partition still holding rows is left for a person to look at.
    """
    with connection.cursor() as cursor:
        cursor.execute(_ORPHANS_SQL)
        orphans = [row[0] for row in cursor.fetchall()]
    dropped = 0
    for name in orphans:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
                cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")')  # noqa: S608
                if cursor.fetchone()[0]:
                    logger.warning("memory partition %s of a deleted owner still has rows", name)
                    continue
                cursor.execute(f'DROP TABLE "{name}"')
            dropped += 1
        except OperationalError as exc:  # the lock was busy: next pass
            logger.info("memory partition %s not dropped yet: %s", name, exc)
    return dropped
