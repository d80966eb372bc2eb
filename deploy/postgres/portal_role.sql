-- The database role the portal runs as in production.
--
-- The portal's tables are owned by a separate migration role (it runs `manage.py
-- migrate`). The application role may read and write its working tables, but on the
-- access log it has INSERT and SELECT only: no UPDATE, DELETE or TRUNCATE, on the
-- partitioned table or on any partition. That is the second layer under the triggers
-- (which even the owner cannot get past without disabling them, a DDL change that
-- shows in the database's own log).
--
-- Run as the migration role after every `migrate` (new tables and partitions need
-- their grants), with psql:
--   psql -v app_role=pjd_portal_app -f deploy/postgres/portal_role.sql
-- The tests run it with :app_role replaced by a throw-away role.

GRANT USAGE ON SCHEMA public TO :app_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :app_role;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :app_role;

-- The access log: append and read, nothing else, on the parent and every partition.
REVOKE ALL ON audit_accessevent FROM :app_role;
GRANT SELECT, INSERT ON audit_accessevent TO :app_role;
SELECT set_config('pjd.app_role', :'app_role', false);
DO $$
DECLARE
  part regclass;
BEGIN
  FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit_accessevent'::regclass LOOP
    EXECUTE format('REVOKE ALL ON %s FROM %I', part, current_setting('pjd.app_role'));
  END LOOP;
END;
$$;
