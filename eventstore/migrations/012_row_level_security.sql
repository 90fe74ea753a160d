-- Tenant isolation in the database (DESIGN §1 principle 6, §4; README, "Security").
--
-- Two roles do ACCI's work:
--   * the tables' owner (whoever runs `acci db migrate`, ACCI_DATABASE_URL): migrations and the
--     cross-tenant work that must see everything (projections reading the global order,
--     rebuilds, snapshot jobs, backups, restores, verification). Row-level security does not
--     apply to a table's owner.
--   * acci_app (ACCI_APP_DATABASE_URL): tenant-scoped work (command handling, tenant-scoped
--     queries). It owns nothing, has no BYPASSRLS, and sees a tenant's rows only in a
--     transaction that set acci.tenant_id to that tenant (set_config(..., true), per
--     transaction: eventstore/tenant_scope.py). With no tenant set it sees no row at all.
--
-- The role is created once per cluster (any database's migration may be first; a concurrent
-- one may win the race). It logs in without a password here; give it one (ALTER ROLE acci_app
-- PASSWORD ...) where the server asks for passwords, as the compose file's init script does.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'acci_app') THEN
        CREATE ROLE acci_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it first
END;
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO acci_app', current_database());
END;
$$;

GRANT USAGE ON SCHEMA event_store, snapshots, read_models, subscriptions TO acci_app;

-- The tenant a transaction works for; NULL (no row visible) when none was set.
CREATE FUNCTION event_store.current_tenant() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('acci.tenant_id', true), '') $$;

-- Events and commands: appended and read, never changed or removed by the app.
GRANT SELECT, INSERT ON event_store.events, event_store.commands TO acci_app;
-- The restore trigger on commands looks up removed commands as the inserting role.
GRANT SELECT ON event_store.removed_commands TO acci_app;
-- Snapshots: written on the command path (snapshot policy) and read by every load.
GRANT SELECT, INSERT ON snapshots.aggregate_snapshots TO acci_app;
-- The inbox is written in a subscriber's own transaction, per message and its tenant.
GRANT SELECT, INSERT, UPDATE, DELETE ON subscriptions.inbox, subscriptions.inbox_failures
    TO acci_app;
-- Parked events are the operators' (cross-tenant) to resolve; a tenant may read its own.
GRANT SELECT ON read_models.dead_letters TO acci_app;
-- What a query needs besides the read model: where the projections are (read-your-writes
-- waits) and which version is live. Neither holds tenant data.
GRANT SELECT ON read_models.checkpoints, read_models.versions TO acci_app;

-- One policy per table: a row is visible, and may be written, only in its own tenant's
-- transaction. Read-model tables get the same policy when their version's tables are created
-- (readmodels/versions.py).
DO $$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY[
        'event_store.events', 'event_store.commands', 'event_store.removed_commands',
        'snapshots.aggregate_snapshots', 'subscriptions.inbox', 'subscriptions.inbox_failures',
        'read_models.dead_letters'
    ] LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', v_table);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %s USING (tenant_id = event_store.current_tenant())'
            ' WITH CHECK (tenant_id = event_store.current_tenant())', v_table);
    END LOOP;
END;
$$;

-- Whether a command id is taken in any tenant: an append whose id collides with another
-- tenant's command is refused as reused (CommandIdReusedError), though acci_app cannot see
-- that command. Says nothing else about it.
CREATE FUNCTION event_store.command_id_taken(p_command_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT FROM event_store.commands WHERE command_id = p_command_id) $$;
REVOKE ALL ON FUNCTION event_store.command_id_taken(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.command_id_taken(uuid) TO acci_app;
