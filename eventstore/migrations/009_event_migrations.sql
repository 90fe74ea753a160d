-- What `acci migrate-events` (EventMigrationWorkflow, eventstore/event_migration.py) did: one row
-- per run and per step (event type, from version -> to version), its count brought up to date by
-- the same transaction as each batch that rewrote events, so the record and the events agree
-- whenever a run is killed. `migration_id` names the run (its first Temporal run id, kept across
-- continue-as-new); `finished_at` is set by its last batch.
CREATE TABLE event_store.event_migrations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    migration_id text NOT NULL,
    workflow_id text NOT NULL,
    tenant_filter text,            -- NULL: every tenant
    type_filter text[],            -- NULL: every event type
    event_type text NOT NULL,
    from_version integer NOT NULL CHECK (from_version > 0),
    to_version integer NOT NULL,
    count bigint NOT NULL DEFAULT 0 CHECK (count >= 0),
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    CONSTRAINT event_migrations_step UNIQUE (migration_id, event_type, from_version, to_version),
    CONSTRAINT event_migrations_upward CHECK (to_version > from_version)
);
