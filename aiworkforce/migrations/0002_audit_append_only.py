"""The database itself refuses UPDATE and DELETE on audit entries."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION aiworkforce_audit_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only: % on aiworkforce_auditentry is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER aiworkforce_audit_append_only
    BEFORE UPDATE OR DELETE ON aiworkforce_auditentry
    FOR EACH ROW EXECUTE FUNCTION aiworkforce_audit_refuse_change();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS aiworkforce_audit_append_only ON aiworkforce_auditentry;
DROP FUNCTION IF EXISTS aiworkforce_audit_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("aiworkforce", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
