-- Read models (DESIGN §5): the tables the projections keep, their checkpoints and the events
-- they parked. Rows change only in the projection runner's transactions (readmodels/runner.py),
-- always together with the projection's checkpoint, so every event is applied exactly once.
--
-- IF NOT EXISTS: a database whose event_store schema was dropped and re-migrated keeps these.

CREATE SCHEMA IF NOT EXISTS read_models;

-- One row per tenant (projection "tenants").
CREATE TABLE IF NOT EXISTS read_models.tenants (
    tenant_id text PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    -- Users registered and not deactivated.
    user_count integer NOT NULL DEFAULT 0,
    settings jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    -- created_at of the last event applied to the row (a user event that changed user_count too).
    last_updated timestamptz NOT NULL,
    -- The tenant stream's version.
    version bigint NOT NULL
);

-- One row per user (projection "users").
CREATE TABLE IF NOT EXISTS read_models.users (
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    email text NOT NULL,
    display_name text NOT NULL,
    -- Sorted by code point, no duplicates.
    roles text[] NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'deactivated')),
    created_at timestamptz NOT NULL,
    last_updated timestamptz NOT NULL,
    -- The user stream's version.
    version bigint NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE INDEX IF NOT EXISTS users_tenant_email ON read_models.users (tenant_id, email);

-- How many events of each type a tenant's aggregates have had (projection "tenant_activity").
CREATE TABLE IF NOT EXISTS read_models.tenant_activity (
    tenant_id text NOT NULL,
    event_type text NOT NULL,
    event_count bigint NOT NULL DEFAULT 0,
    -- created_at of the last event of this type applied.
    last_event_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_type)
);

-- Where each projection is in the global order: the last event applied (or passed over).
CREATE TABLE IF NOT EXISTS read_models.checkpoints (
    projection text PRIMARY KEY,
    transaction_id bigint NOT NULL DEFAULT 0,
    global_position bigint NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'paused')),
    last_error text,
    updated_at timestamptz
);

-- Events a projection could not apply after its retries: parked, never dropped. A row with no
-- resolution is open; `retried` (applied once, later) and `skipped` close it.
CREATE TABLE IF NOT EXISTS read_models.dead_letters (
    projection text NOT NULL,
    event_id uuid NOT NULL,
    tenant_id text NOT NULL,
    event_type text NOT NULL,
    transaction_id bigint NOT NULL,
    global_position bigint NOT NULL,
    error text NOT NULL,
    attempts integer NOT NULL CHECK (attempts > 0),
    parked_at timestamptz NOT NULL DEFAULT now(),
    resolution text CHECK (resolution IN ('retried', 'skipped')),
    resolved_at timestamptz,
    PRIMARY KEY (projection, event_id)
);
