"""An index for "has this attest's basis event been written?" (access/selectors.py): an
attest is in force only once the event that states it is in the log, so one written
without its event (the write failed after the attest was stored) opens nothing.

Partial (only the two event types that state a basis), so it stays small however large
the log grows; on PostgreSQL it is made on the partitioned table and so on every month's
partition.
"""

from django.db import migrations

INDEX = (
    "CREATE INDEX IF NOT EXISTS audit_ev_attest_stated ON audit_accessevent (attest_id) "
    "WHERE event_type IN ('basis_stated', 'emergency_access')"
)
DROP = "DROP INDEX IF EXISTS audit_ev_attest_stated"


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.execute(INDEX)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0017_one_hash_scheme")]
    operations = [migrations.RunPython(forward, backward)]
