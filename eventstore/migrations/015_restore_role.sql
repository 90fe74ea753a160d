-- A tenant restore runs as acci_restore (eventstore/backup/restore.py): it deletes and
-- rewrites one tenant's history, which no tenant-scoped role may do, yet row-level security
-- still keeps it inside that tenant, whatever its statements say. The restore's transaction
-- switches to it (SET LOCAL ROLE) with the tenant set, and back before it refreshes the read
-- models. It cannot log in, owns nothing and has no BYPASSRLS; the tables' owner (who runs
-- this migration and the restores) is made a member so that it may switch to it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'acci_restore') THEN
        CREATE ROLE acci_restore NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it first
END;
$$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'acci_restore', 'MEMBER') THEN
        EXECUTE format('GRANT acci_restore TO %I', current_user);
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA event_store, snapshots TO acci_restore;
GRANT SELECT, INSERT, DELETE ON event_store.events, event_store.commands,
    snapshots.aggregate_snapshots, event_store.removed_commands TO acci_restore;
-- SELECT: the restore records itself with ON CONFLICT (restore_id), which reads the key.
GRANT SELECT, INSERT ON event_store.restores TO acci_restore;

ALTER TABLE event_store.restores ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_store.restores
    USING (tenant_id = event_store.current_tenant())
    WITH CHECK (tenant_id = event_store.current_tenant());
