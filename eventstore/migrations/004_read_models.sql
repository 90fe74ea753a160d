-- Read models (DESIGN §5): the projections' checkpoints and the events they parked. Rows change
-- only in the projection runner's transactions (readmodels/runner.py), always together with the
-- projection's checkpoint, so every event is applied exactly once.
--
-- Amended (see eventstore/migrate.py _AMENDED): this migration once created the built-in read
-- models' tables too. Each read model now states its own shape and creates its own tables
-- (readmodels/versions.py); a database migrated before keeps those tables and adopts them as
-- version 1.
--
-- IF NOT EXISTS: a database whose event_store schema was dropped and re-migrated keeps these.

CREATE SCHEMA IF NOT EXISTS read_models;

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
