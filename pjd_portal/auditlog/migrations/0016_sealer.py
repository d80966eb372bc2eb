"""The sealer's table (audit/sealer.py): each plainly written event's link in the seal chain.

Append-only in the database like the events themselves: UPDATE, DELETE (and on PostgreSQL
TRUNCATE) are refused for every role, the owner included, by the same trigger function as
the log's (migration 0002). Events written before this migration keep their own links in
their rows and are verified as before (audit/chain.py).
"""

from django.db import migrations, models

PG_FORWARD = """
CREATE TRIGGER audit_auditseal_no_update_delete
  BEFORE UPDATE OR DELETE ON audit_auditseal
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_auditseal_no_truncate
  BEFORE TRUNCATE ON audit_auditseal
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
"""
PG_BACKWARD = """
DROP TRIGGER IF EXISTS audit_auditseal_no_truncate ON audit_auditseal;
DROP TRIGGER IF EXISTS audit_auditseal_no_update_delete ON audit_auditseal;
"""
SQLITE_FORWARD = [
    """CREATE TRIGGER audit_auditseal_no_update BEFORE UPDATE ON audit_auditseal
       BEGIN SELECT RAISE(ABORT, 'audit_auditseal is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER audit_auditseal_no_delete BEFORE DELETE ON audit_auditseal
       BEGIN SELECT RAISE(ABORT, 'audit_auditseal is append-only: DELETE refused'); END;""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_auditseal_no_update;",
    "DROP TRIGGER IF EXISTS audit_auditseal_no_delete;",
]


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    else:
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    statements = [PG_BACKWARD] if schema_editor.connection.vendor == "postgresql" else SQLITE_BACKWARD
    for statement in statements:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0015_no_database_foreign_keys")]

    operations = [
        migrations.CreateModel(
            name="AuditSeal",
            fields=[
                ("event_pk", models.BigIntegerField(primary_key=True, serialize=False)),
                ("seq", models.BigIntegerField(unique=True)),
                ("prev_hash", models.CharField(max_length=64)),
                ("entry_hash", models.CharField(max_length=64)),
                ("sealed_at", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(forward, backward),
    ]
