-- The audit log of command attempts (issue 14, §3; README, "Security"): who sent which command
-- to which target, when, and how it ended. Written by the command activity
-- (activities/command_activities.py through eventstore/audit.py) in the command's tenant
-- (eventstore/tenant_scope.py), read by `acci audit`.
--
-- Append-only: acci_app may SELECT and INSERT, nothing else (no UPDATE, DELETE or TRUNCATE
-- grant, nothing for PUBLIC), and a trigger refuses UPDATE and DELETE from anyone, the owner
-- included. The owner keeps TRUNCATE (and could drop the trigger) for a deliberate retention
-- purge; that is an operator's act on the owner's connection, never the application's.
--
-- One row per attempt outcome: a retried activity, or a command re-sent by the same principal,
-- writes an outcome already recorded again, and the unique key below turns the second write
-- into nothing (INSERT ... ON CONFLICT DO NOTHING). A denied attempt followed by an accepted one
-- (another principal, same command id) leaves both. A principal is its id, tenant and kind:
-- ann@acme and ann@globex, or user x and service x, are different senders.
--
-- IF NOT EXISTS (and the policy and trigger made again): a database whose event_store schema
-- was dropped and re-migrated keeps its audit log, as it keeps its read models.
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE IF NOT EXISTS audit.command_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    tenant_id text NOT NULL,
    -- Who: NULL when the command named no principal (it is denied).
    principal_id text,
    principal_tenant text,
    principal_roles text[] NOT NULL DEFAULT '{}',
    principal_kind text,
    -- What: the type as sent (it may name no known type: a rejected command), the target once
    -- the command parsed.
    command_type text NOT NULL,
    command_id uuid NOT NULL,
    aggregate_type text,
    aggregate_id text,
    outcome text NOT NULL
        CHECK (outcome IN ('accepted', 'duplicate', 'rejected', 'denied', 'failed')),
    -- Why (not accepted): the error's type as Temporal shows it, and its message.
    error_type text,
    reason text,
    workflow_id text,
    workflow_run_id text,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT command_attempts_once
        UNIQUE NULLS NOT DISTINCT
        (tenant_id, command_id, outcome, principal_id, principal_tenant, principal_kind)
);

CREATE INDEX IF NOT EXISTS command_attempts_by_time ON audit.command_attempts (at);
CREATE INDEX IF NOT EXISTS command_attempts_by_tenant_time
    ON audit.command_attempts (tenant_id, at);

CREATE OR REPLACE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'ACA01',
        MESSAGE = format('%s on %I.%I refused: the audit log is append-only',
                         TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME);
END;
$$;

DROP TRIGGER IF EXISTS append_only ON audit.command_attempts;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.command_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

REVOKE ALL ON SCHEMA audit FROM PUBLIC;
REVOKE ALL ON audit.command_attempts FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO acci_app;
GRANT SELECT, INSERT ON audit.command_attempts TO acci_app;

-- Exactly the policy of migration 012: a row is visible, and may be written, only in its own
-- tenant's transaction.
ALTER TABLE audit.command_attempts ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON audit.command_attempts;
CREATE POLICY tenant_isolation ON audit.command_attempts
    USING (tenant_id = event_store.current_tenant())
    WITH CHECK (tenant_id = event_store.current_tenant());
