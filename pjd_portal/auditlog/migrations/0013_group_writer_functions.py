"""PostgreSQL functions for the group writer (audit/group_commit.py).

Each group writer (one per process) appends to a hash chain of its own, claimed for the
life of its connection with a session advisory lock, so no writer ever waits on another's
chain head. `audit_claim_writer_chain` claims the first free chain of a range and returns
its head. `audit_append_batch` appends a batch in one statement (one round trip, its own
transaction in autocommit): it moves the head on only if it is still where the writer
last left it (else the whole statement fails and the writer reloads), and inserts the
rows from one JSON document (each row the very JSON its content digest was made from,
plus its place in the chain and its hash), returning their ids.

The column list is the access event's; tests/test_group_commit.py fails when the model
gains a column this function does not insert.

SQLite (the demo) writes each event in its own transaction and needs neither.
"""

from django.db import migrations

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION audit_claim_writer_chain(p_first integer, p_last integer)
RETURNS TABLE (claimed_chain smallint, head_seq bigint, head_hash varchar)
LANGUAGE plpgsql AS $$
DECLARE
  c integer;
BEGIN
  FOR c IN p_first..p_last LOOP
    -- 5262916 = 'PJD': the advisory lock namespace of the access log's writer chains.
    IF pg_try_advisory_lock(5262916, c) THEN
      INSERT INTO audit_auditchainhead (chain, seq, last_hash) VALUES (c, 0, repeat('0', 64))
        ON CONFLICT (chain) DO NOTHING;
      RETURN QUERY SELECT h.chain, h.seq, h.last_hash FROM audit_auditchainhead AS h WHERE h.chain = c;
      RETURN;
    END IF;
  END LOOP;
  RAISE EXCEPTION 'no free audit writer chain between % and %', p_first, p_last
    USING ERRCODE = 'insufficient_resources';
END;
$$;

CREATE OR REPLACE FUNCTION audit_append_batch(p_chain smallint, p_old_seq bigint, p_last_hash varchar, p_rows jsonb)
RETURNS TABLE (new_id bigint, new_event_id uuid)
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE audit_auditchainhead AS h SET seq = p_old_seq + jsonb_array_length(p_rows), last_hash = p_last_hash
   WHERE h.chain = p_chain AND h.seq = p_old_seq;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit chain % is no longer at seq %', p_chain, p_old_seq
      USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN QUERY
  INSERT INTO audit_accessevent AS e (
    event_id, occurred_at, event_type, outcome, reason_code, flagged_for_review,
    actor_user_id, actor_pid, actor_hpr_number, actor_name, actor_authorizations,
    organisation_orgnr, organisation_name, patient_id, patient_national_id, document_id,
    source_orgnr, basis, purpose_of_use, reason_text, attest_id, request_id, client_ip,
    user_agent, details, chain, chain_seq, prev_hash, entry_hash
  )
  SELECT
    r.event_id, r.occurred_at, r.event_type, r.outcome, r.reason_code, r.flagged_for_review,
    r.actor_user_id, r.actor_pid, r.actor_hpr_number, r.actor_name, r.actor_authorizations,
    r.organisation_orgnr, r.organisation_name, r.patient_id, r.patient_national_id, r.document_id,
    r.source_orgnr, r.basis, r.purpose_of_use, r.reason_text, r.attest_id, r.request_id,
    -- the hashed form writes "no address" as "": the column holds NULL
    NULLIF(x.j ->> 'client_ip', '')::inet,
    r.user_agent, r.details, r.chain, r.chain_seq, r.prev_hash, r.entry_hash
  FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS x (j, n),
       LATERAL jsonb_populate_record(NULL::audit_accessevent, x.j - 'client_ip') AS r
  ORDER BY x.n
  RETURNING e.id, e.event_id;
END;
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS audit_append_batch(smallint, bigint, varchar, jsonb);
DROP FUNCTION IF EXISTS audit_claim_writer_chain(integer, integer);
"""


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTIONS, params=None)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0012_role_event_types")]
    operations = [migrations.RunPython(forward, backward)]
