"""Make the access-event table append-only in the database itself.

The application never updates or deletes events, but that is a promise of code; this
makes it a property of the database: UPDATE and DELETE are refused for every role,
the table owner included, on PostgreSQL and on SQLite. On PostgreSQL TRUNCATE is refused
too (a statement trigger); a production role that has only INSERT and SELECT is the
second layer (see the audit issue).
"""

from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_accessevent is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_accessevent_no_update_delete
  BEFORE UPDATE OR DELETE ON audit_accessevent
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_accessevent_no_truncate
  BEFORE TRUNCATE ON audit_accessevent
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
"""
PG_BACKWARD = """
DROP TRIGGER IF EXISTS audit_accessevent_no_truncate ON audit_accessevent;
DROP TRIGGER IF EXISTS audit_accessevent_no_update_delete ON audit_accessevent;
DROP FUNCTION IF EXISTS audit_refuse_change();
"""
SQLITE_FORWARD = [
    """CREATE TRIGGER audit_accessevent_no_update BEFORE UPDATE ON audit_accessevent
       BEGIN SELECT RAISE(ABORT, 'audit_accessevent is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER audit_accessevent_no_delete BEFORE DELETE ON audit_accessevent
       BEGIN SELECT RAISE(ABORT, 'audit_accessevent is append-only: DELETE refused'); END;""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_accessevent_no_update;",
    "DROP TRIGGER IF EXISTS audit_accessevent_no_delete;",
]


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)  # no placeholders: keep % literal
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"no append-only trigger for database vendor {vendor!r}")


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    statements = [PG_BACKWARD] if vendor == "postgresql" else SQLITE_BACKWARD
    for statement in statements:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
