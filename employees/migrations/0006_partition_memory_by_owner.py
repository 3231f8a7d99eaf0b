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

A trigger on the employee and team tables makes an owner's partition when the owner is
inserted: every way of creating one (services, admin, fixtures, the demo loader) then has it
before its first memory can be written. The partition is made apart and then attached, which
takes SHARE UPDATE EXCLUSIVE on the parent: recall and writes go on while someone is hired
(`CREATE TABLE ... PARTITION OF` would hold ACCESS EXCLUSIVE until the hire commits). The
empty partitions of deleted owners are dropped later by run_due (employees.memory.partitions), in a
transaction of their own, never in the one that deleted the owner.

The table keeps Django's indexes, under their names (each becomes a partitioned index, built
on every partition); a partitioned table cannot have a primary key without its partition keys,
so `id` has a plain index and stays unique through its identity sequence (which continues
where the old one stopped). Nothing references memory rows by foreign key, and since 0005 the
memory table's own foreign keys live in Django only.
"""

from django.db import migrations

PARENT = "employees_memoryentry"
SHARED = "employees_memoryentry_shared"

# Rebuild `table` as `kind` ('partitioned' or 'plain') with the same columns, check
# constraints and indexes (read from the catalog, so Django's names survive).
_REBUILD = """
DO $rebuild$
DECLARE
    index_defs text[];
    definition text;
    next_id bigint;
BEGIN
    SELECT coalesce(array_agg(pg_get_indexdef(i.indexrelid)), '{}') INTO index_defs
    FROM pg_index i
    WHERE i.indrelid = '%(table)s'::regclass AND NOT i.indisprimary
      AND i.indexrelid::regclass::text <> 'memory_id_idx';
    -- Continue after every id ever handed out, not after the largest left: old tasks and the
    -- audit trail name deleted memories by id.
    EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM %%s',
                   pg_get_serial_sequence('%(table)s', 'id')) INTO next_id;
    SELECT greatest(coalesce(max(id), 0), next_id) + 1 INTO next_id FROM %(table)s;

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
END
$rebuild$;
"""

_PARTITION_FUNCTIONS = f"""
CREATE FUNCTION employees_memory_partition_create(owner text, owner_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    leaf text := '{PARENT}_' || left(owner, 1) || owner_id;
BEGIN
    IF to_regclass(leaf) IS NOT NULL THEN
        RETURN;  -- a reused id (tests reset sequences) finds its old, empty partition
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                   'INCLUDING STORAGE INCLUDING COMPRESSION)', leaf);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%s)',
                   CASE owner WHEN 'employee' THEN '{PARENT}' ELSE '{SHARED}' END,
                   leaf, owner_id);
END $$;

CREATE FUNCTION employees_memory_partition_follow_owner() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM employees_memory_partition_create(TG_ARGV[0], NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER memory_partition_follows_employee AFTER INSERT ON employees_employee
    FOR EACH ROW EXECUTE FUNCTION employees_memory_partition_follow_owner('employee');
CREATE TRIGGER memory_partition_follows_team AFTER INSERT ON employees_team
    FOR EACH ROW EXECUTE FUNCTION employees_memory_partition_follow_owner('team');
"""

_DROP_PARTITION_FUNCTIONS = """
DROP TRIGGER memory_partition_follows_employee ON employees_employee;
DROP TRIGGER memory_partition_follows_team ON employees_team;
DROP FUNCTION employees_memory_partition_follow_owner();
DROP FUNCTION employees_memory_partition_create(text, bigint);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("employees", "0005_memory_foreign_keys_in_django_only"),
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
