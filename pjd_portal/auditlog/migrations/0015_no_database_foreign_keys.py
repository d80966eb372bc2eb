"""No database foreign keys from the access log to patients, documents and attests.

A foreign-key check locks the referred row (FOR KEY SHARE) for every row inserted: every
lookup, list and open would write a lock into the patient's row (a dirty page and WAL of
its own, a multixact when two clinicians open the same patient), and the check itself
costs each event a query. The log does not need them: each event copies what it refers to
(the national id, the source's org.nr, the document id in its details), and its hash
covers the ids as written. Deletion stays refused where it matters: the model's PROTECT
makes the ORM refuse to delete a patient, document or attest the log refers to, and none of
them is ever deleted. On this machine the benchmark's four worker processes went from
4,900-5,100 to 5,300-6,100 events/s without them.

Only Django's state changes on SQLite (the demo keeps its table as it is: rebuilding it
would drop its append-only triggers).
"""

import django.db.models.deletion
from django.db import migrations, models

DROP = """
ALTER TABLE audit_accessevent
  DROP CONSTRAINT IF EXISTS audit_ev_patient_fk,
  DROP CONSTRAINT IF EXISTS audit_ev_document_fk,
  DROP CONSTRAINT IF EXISTS audit_ev_attest_fk;
"""
ADD = """
ALTER TABLE audit_accessevent
  ADD CONSTRAINT audit_ev_patient_fk FOREIGN KEY (patient_id)
    REFERENCES patients_patient (id) DEFERRABLE INITIALLY DEFERRED,
  ADD CONSTRAINT audit_ev_document_fk FOREIGN KEY (document_id)
    REFERENCES documents_documentreference (id) DEFERRABLE INITIALLY DEFERRED,
  ADD CONSTRAINT audit_ev_attest_fk FOREIGN KEY (attest_id)
    REFERENCES access_accessattest (id) DEFERRABLE INITIALLY DEFERRED;
"""


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ADD, params=None)


def _fk(to):  # type: ignore[no-untyped-def]
    return models.ForeignKey(
        blank=True,
        db_constraint=False,
        null=True,
        on_delete=django.db.models.deletion.PROTECT,
        related_name="+",
        to=to,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0002_initial"),
        ("audit", "0014_legal_entity"),
        ("documents", "0003_document_block"),
        ("patients", "0002_privacy_choice_request_and_history"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="accessevent", name="attest", field=_fk("access.accessattest")),
                migrations.AlterField(
                    model_name="accessevent", name="document", field=_fk("documents.documentreference")
                ),
                migrations.AlterField(model_name="accessevent", name="patient", field=_fk("patients.patient")),
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        ),
    ]
