"""The point of care and the legal entity (docs/audit-log.md: the "where" of every event).

The organisation acted for stays in organisation_*; a sub-unit's legal entity (its
parent) goes in legal_entity_*. Both columns are added with an empty default, which on
PostgreSQL 11+ rewrites nothing, however large the log. The group writer's function
inserts them too, and now moves a head only from the exact link the writer left it at
(seq and hash; it replaces the one of 0013). The new columns are hashed only when set,
so every earlier event's hash still holds (audit/chain.py).
"""

import importlib

from django.db import migrations, models

FUNCTION = r"""
-- 0013's had no p_old_hash: the head is now moved only from the exact link it was at.
DROP FUNCTION IF EXISTS audit_append_batch(smallint, bigint, varchar, jsonb);
CREATE OR REPLACE FUNCTION audit_append_batch(
  p_chain smallint, p_old_seq bigint, p_old_hash varchar, p_last_hash varchar, p_rows jsonb
)
RETURNS TABLE (new_id bigint, new_event_id uuid)
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE audit_auditchainhead AS h SET seq = p_old_seq + jsonb_array_length(p_rows), last_hash = p_last_hash
   WHERE h.chain = p_chain AND h.seq = p_old_seq AND h.last_hash = p_old_hash;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit chain % is no longer at seq % with that hash', p_chain, p_old_seq
      USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN QUERY
  INSERT INTO audit_accessevent AS e (
    event_id, occurred_at, event_type, outcome, reason_code, flagged_for_review,
    actor_user_id, actor_pid, actor_hpr_number, actor_name, actor_authorizations,
    organisation_orgnr, organisation_name, patient_id, patient_national_id, document_id,
    source_orgnr, basis, purpose_of_use, reason_text, attest_id, request_id, client_ip,
    user_agent, details, chain, chain_seq, prev_hash, entry_hash, legal_entity_orgnr, legal_entity_name
  )
  SELECT
    r.event_id, r.occurred_at, r.event_type, r.outcome, r.reason_code, r.flagged_for_review,
    r.actor_user_id, r.actor_pid, r.actor_hpr_number, r.actor_name, r.actor_authorizations,
    r.organisation_orgnr, r.organisation_name, r.patient_id, r.patient_national_id, r.document_id,
    r.source_orgnr, r.basis, r.purpose_of_use, r.reason_text, r.attest_id, r.request_id,
    -- the hashed form writes "no address" as "": the column holds NULL
    NULLIF(x.j ->> 'client_ip', '')::inet,
    r.user_agent, r.details, r.chain, r.chain_seq, r.prev_hash, r.entry_hash,
    -- absent from an event that has none: the column's empty value
    coalesce(r.legal_entity_orgnr, ''), coalesce(r.legal_entity_name, '')
  FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS x (j, n),
       LATERAL jsonb_populate_record(NULL::audit_accessevent, x.j - 'client_ip') AS r
  ORDER BY x.n
  RETURNING e.id, e.event_id;
END;
$$;
"""


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        migration = importlib.import_module("pjd_portal.auditlog.migrations.0013_group_writer_functions")
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS audit_append_batch(smallint, bigint, varchar, varchar, jsonb)", params=None
        )
        schema_editor.execute(migration.FUNCTIONS, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0013_group_writer_functions'),
    ]

    operations = [
        migrations.AddField(
            model_name='accessevent',
            name='legal_entity_name',
            field=models.CharField(blank=True, db_default='', default='', max_length=200),
        ),
        migrations.AddField(
            model_name='accessevent',
            name='legal_entity_orgnr',
            field=models.CharField(blank=True, db_default='', default='', max_length=9),
        ),
        migrations.RunPython(forward, backward),
    ]
