"""Partition the memory table by owner: one partition per employee, one per team.

Recall is always scoped to one employee's memories plus its team's. On one table with one HNSW
graph, that filter keeps 1-5% of a large table, and a filtered HNSW walk then misses many of
the nearest rows it is allowed to see (benchmarks/memory.py measured recall@10 0.61-0.69 at
1M). With a partition, and so a graph, per owner, recall walks two small graphs with no
filter to speak of.

    employees_memoryentry           PARTITION BY LIST (employee_id)
      employees_memoryentry_e<id>   FOR VALUES IN (<id>)        an employee's own memories
      employees_memoryentry_shared  FOR VALUES IN (NULL)        PARTITION BY LIST (team_id)
        employees_memoryentry_t<id> FOR VALUES IN (<id>)        a team's shared memories

Partitions come and go with their owner through triggers on the employee and team tables:
every way of creating an employee (services, admin, fixtures, the demo loader) then gets one
before its first memory can be written. The table keeps Django's indexes, under their names
(each becomes a partitioned index, built on every partition); a partitioned table cannot have
a primary key without its partition keys, so `id` has a plain index and stays unique through
its identity sequence. Nothing references memory rows by foreign key.
"""

from django.db import migrations

PARENT = "employees_memoryentry"
SHARED = "employees_memoryentry_shared"

# Rebuild `table` as `kind` ('partitioned' or 'plain') with the same columns, check
# constraints, foreign keys and indexes (read from the catalog, so Django's names survive).
_REBUILD = """
DO $rebuild$
DECLARE
    index_defs text[];
    foreign_keys text[];
    definition text;
    next_id bigint;
BEGIN
    SELECT coalesce(array_agg(pg_get_indexdef(i.indexrelid)), '{}') INTO index_defs
    FROM pg_index i
    WHERE i.indrelid = '%(table)s'::regclass AND NOT i.indisprimary
      AND i.indexrelid::regclass::text <> 'memory_id_idx';
    SELECT coalesce(array_agg(format('ADD CONSTRAINT %%I %%s', conname,
                                     pg_get_constraintdef(oid))), '{}')
    INTO foreign_keys
    FROM pg_constraint WHERE conrelid = '%(table)s'::regclass AND contype = 'f';
    SELECT coalesce(max(id), 0) + 1 INTO next_id FROM %(table)s;

    ALTER TABLE %(table)s RENAME TO %(table)s_before;
    EXECUTE format(
        'CREATE TABLE %(table)s (LIKE %(table)s_before INCLUDING DEFAULTS INCLUDING IDENTITY '
        'INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION) %%s',
        CASE WHEN '%(kind)s' = 'partitioned' THEN 'PARTITION BY LIST (employee_id)' ELSE '' END);
    IF '%(kind)s' = 'partitioned' THEN
        CREATE TABLE %(shared)s PARTITION OF %(table)s FOR VALUES IN (NULL)
            PARTITION BY LIST (team_id);
        PERFORM employees_memory_partition_create('employee', id) FROM employees_employee;
        PERFORM employees_memory_partition_create('team', id) FROM employees_team;
        CREATE INDEX memory_id_idx ON %(table)s (id);
    ELSE
        ALTER TABLE %(table)s ADD PRIMARY KEY (id);
    END IF;
    INSERT INTO %(table)s SELECT * FROM %(table)s_before;
    PERFORM setval(pg_get_serial_sequence('%(table)s', 'id'), next_id, false);
    DROP TABLE %(table)s_before CASCADE;
    FOREACH definition IN ARRAY index_defs LOOP
        -- An index of a partitioned table reads "ON ONLY"; the new one covers the table whole.
        EXECUTE replace(replace(definition, ' ON ONLY ', ' ON '), '%(table)s_before', '%(table)s');
    END LOOP;
    FOREACH definition IN ARRAY foreign_keys LOOP
        EXECUTE 'ALTER TABLE %(table)s ' || definition;
    END LOOP;
END
$rebuild$;
"""

_PARTITION_FUNCTIONS = f"""
CREATE FUNCTION employees_memory_partition_create(owner text, owner_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF owner = 'employee' THEN
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF {PARENT} FOR VALUES IN (%s)',
                       '{PARENT}_e' || owner_id, owner_id);
    ELSE
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF {SHARED} FOR VALUES IN (%s)',
                       '{PARENT}_t' || owner_id, owner_id);
    END IF;
END $$;

CREATE FUNCTION employees_memory_partition_drop(owner text, owner_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- The owner's memories were deleted with it (Django cascades before the owner's row
    -- goes). A partition still in use by this session stays, empty, and is reused by id.
    EXECUTE format('DROP TABLE IF EXISTS %I', '{PARENT}_' || left(owner, 1) || owner_id);
EXCEPTION WHEN object_in_use THEN
    NULL;
END $$;

CREATE FUNCTION employees_memory_partition_follow_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM employees_memory_partition_create(TG_ARGV[0], NEW.id);
    ELSE
        PERFORM employees_memory_partition_drop(TG_ARGV[0], OLD.id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER memory_partition_follows_employee AFTER INSERT OR DELETE ON employees_employee
    FOR EACH ROW EXECUTE FUNCTION employees_memory_partition_follow_owner('employee');
CREATE TRIGGER memory_partition_follows_team AFTER INSERT OR DELETE ON employees_team
    FOR EACH ROW EXECUTE FUNCTION employees_memory_partition_follow_owner('team');
"""

_DROP_PARTITION_FUNCTIONS = """
DROP TRIGGER memory_partition_follows_employee ON employees_employee;
DROP TRIGGER memory_partition_follows_team ON employees_team;
DROP FUNCTION employees_memory_partition_follow_owner();
DROP FUNCTION employees_memory_partition_drop(text, bigint);
DROP FUNCTION employees_memory_partition_create(text, bigint);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("employees", "0004_memory_pending_embedding_index"),
    ]

    operations = [
        migrations.RunSQL(
            sql=[
                _PARTITION_FUNCTIONS,
                _REBUILD % {"table": PARENT, "shared": SHARED, "kind": "partitioned"},
            ],
            reverse_sql=[
                _REBUILD % {"table": PARENT, "shared": SHARED, "kind": "plain"},
                _DROP_PARTITION_FUNCTIONS,
            ],
        ),
    ]
