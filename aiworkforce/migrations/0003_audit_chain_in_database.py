"""The database computes the audit hash chain itself, in one INSERT.

A BEFORE INSERT trigger takes the chain lock, gives the row the next id (so id order is chain
order), links it to its predecessor's hash and computes its own. No writer can forge a hash,
and each audit write is one statement. Existing rows are re-chained with the new hash.
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION aiworkforce_audit_hash(e aiworkforce_auditentry) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws(E'\x1f',
        e.prev_hash,
        to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        e.action,
        e.actor_type,
        coalesce(e.actor_user_id::text, ''),
        coalesce(e.actor_employee_id::text, ''),
        e.actor_label,
        e.subject_type,
        e.subject_id,
        e.subject_label,
        e.data::text
    ), 'UTF8')), 'hex')
$$;

CREATE FUNCTION aiworkforce_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Held until the inserting transaction ends: chain writers go one at a time.
    PERFORM pg_advisory_xact_lock(7100200300);
    NEW.id := nextval(pg_get_serial_sequence('aiworkforce_auditentry', 'id'));
    NEW.created_at := clock_timestamp();
    SELECT hash INTO NEW.prev_hash FROM aiworkforce_auditentry ORDER BY id DESC LIMIT 1;
    NEW.prev_hash := coalesce(NEW.prev_hash, repeat('0', 64));
    NEW.hash := aiworkforce_audit_hash(NEW);
    RETURN NEW;
END;
$$;

CREATE TRIGGER aiworkforce_audit_chain BEFORE INSERT ON aiworkforce_auditentry
    FOR EACH ROW EXECUTE FUNCTION aiworkforce_audit_chain();

-- Re-chain what exists (development data only: no release has shipped the old scheme).
ALTER TABLE aiworkforce_auditentry DISABLE TRIGGER aiworkforce_audit_append_only;
DO $$
DECLARE
    r aiworkforce_auditentry;
    previous text := repeat('0', 64);
BEGIN
    FOR r IN SELECT * FROM aiworkforce_auditentry ORDER BY id LOOP
        r.prev_hash := previous;
        r.hash := aiworkforce_audit_hash(r);
        UPDATE aiworkforce_auditentry SET prev_hash = r.prev_hash, hash = r.hash WHERE id = r.id;
        previous := r.hash;
    END LOOP;
END $$;
ALTER TABLE aiworkforce_auditentry ENABLE TRIGGER aiworkforce_audit_append_only;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS aiworkforce_audit_chain ON aiworkforce_auditentry;
DROP FUNCTION IF EXISTS aiworkforce_audit_chain();
DROP FUNCTION IF EXISTS aiworkforce_audit_hash(aiworkforce_auditentry);
"""


class Migration(migrations.Migration):
    dependencies = [("aiworkforce", "0002_audit_append_only")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
