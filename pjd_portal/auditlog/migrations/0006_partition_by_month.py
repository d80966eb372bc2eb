"""On PostgreSQL, make the access-event table range-partitioned by month.

Tens of millions of rows a year: monthly partitions keep each index small, let old
months be archived whole, and let BRIN on time stay tight. Django has no notion of a
partitioned table, so this migration swaps the table underneath it:

- the same columns; the primary key becomes (id, occurred_at) and event_id's uniqueness
  (event_id, occurred_at), because PostgreSQL requires the partition key in both;
- indexes that serve the real questions with keyset paging: by patient, by clinician and
  by organisation, each with (occurred_at DESC, id DESC), B-tree; time alone as BRIN;
  the chain order for verify_audit;
- a DEFAULT partition, so an insert never fails for want of a partition, and
  `audit_ensure_partition(month)` (used here and by `manage.py audit_partitions`);
- the append-only triggers again: a row trigger on the parent (cloned to every
  partition) and a TRUNCATE trigger on the parent and on each partition, since a
  partition can be truncated on its own.

SQLite (the demo) keeps the plain table.
"""

from django.db import migrations

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION audit_protect_partition(part regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = part AND tgname = 'audit_partition_no_truncate') THEN
    EXECUTE format('CREATE TRIGGER audit_partition_no_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()', part);
  END IF;
END;
$$;

CREATE OR REPLACE FUNCTION audit_ensure_partition(month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  first_day date := date_trunc('month', month)::date;
  name text := format('audit_accessevent_%s', to_char(first_day, 'YYYY_MM'));
BEGIN
  IF to_regclass(name) IS NULL THEN
    EXECUTE format(
      'CREATE TABLE %I PARTITION OF audit_accessevent FOR VALUES FROM (%L) TO (%L)',
      name, first_day::text || ' 00:00:00+00', (first_day + interval '1 month')::date::text || ' 00:00:00+00'
    );
    PERFORM audit_protect_partition(name::regclass);
  END IF;
  RETURN name;
END;
$$;
"""

SWAP = r"""
ALTER TABLE audit_accessevent RENAME TO audit_accessevent_unpartitioned;

CREATE TABLE audit_accessevent (
  LIKE audit_accessevent_unpartitioned INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED
) PARTITION BY RANGE (occurred_at);
ALTER TABLE audit_accessevent ADD CONSTRAINT audit_ev_pkey PRIMARY KEY (id, occurred_at);
ALTER TABLE audit_accessevent ADD CONSTRAINT audit_ev_event_id_key UNIQUE (event_id, occurred_at);
ALTER TABLE audit_accessevent
  ADD CONSTRAINT audit_ev_patient_fk FOREIGN KEY (patient_id)
    REFERENCES patients_patient (id) DEFERRABLE INITIALLY DEFERRED,
  ADD CONSTRAINT audit_ev_document_fk FOREIGN KEY (document_id)
    REFERENCES documents_documentreference (id) DEFERRABLE INITIALLY DEFERRED,
  ADD CONSTRAINT audit_ev_attest_fk FOREIGN KEY (attest_id)
    REFERENCES access_accessattest (id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE audit_accessevent_default PARTITION OF audit_accessevent DEFAULT;

CREATE INDEX audit_ev_patient_time ON audit_accessevent (patient_id, occurred_at DESC, id DESC);
CREATE INDEX audit_ev_actor_time ON audit_accessevent (actor_user_id, occurred_at DESC, id DESC);
CREATE INDEX audit_ev_org_time ON audit_accessevent (organisation_orgnr, occurred_at DESC, id DESC);
CREATE INDEX audit_ev_chain ON audit_accessevent (chain, chain_seq);
CREATE INDEX audit_ev_time_brin ON audit_accessevent USING brin (occurred_at) WITH (pages_per_range = 32);

CREATE TRIGGER audit_accessevent_no_update_delete
  BEFORE UPDATE OR DELETE ON audit_accessevent
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_accessevent_no_truncate
  BEFORE TRUNCATE ON audit_accessevent
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
SELECT audit_protect_partition('audit_accessevent_default'::regclass);

-- Partitions for every month that has events, and the next three.
SELECT audit_ensure_partition(m::date) FROM (
  SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') AS m FROM audit_accessevent_unpartitioned
  UNION SELECT date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => n) FROM generate_series(0, 3) AS n
) AS months;

INSERT INTO audit_accessevent SELECT * FROM audit_accessevent_unpartitioned;
SELECT setval(
  pg_get_serial_sequence('audit_accessevent', 'id'),
  GREATEST((SELECT max(id) FROM audit_accessevent), 1),
  (SELECT max(id) IS NOT NULL FROM audit_accessevent)
);
DROP TABLE audit_accessevent_unpartitioned;
"""


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTIONS, params=None)
    schema_editor.execute(SWAP, params=None)


class Migration(migrations.Migration):
    # The whole swap runs in the migration's one transaction: all of it or none.
    dependencies = [("audit", "0005_hash_chain")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
