-- The event store and snapshot tables (DESIGN §4).
--
-- Both are LIST-partitioned by tenant_id: one partition per tenant, attached by
-- eventstore/partitions.py when the tenant is first written, plus a DEFAULT partition so that
-- no row can ever be refused for want of a partition.

CREATE SCHEMA IF NOT EXISTS event_store;
CREATE SCHEMA IF NOT EXISTS snapshots;

-- Which tenants have their own partitions (and what those are called).
CREATE TABLE event_store.tenants (
    tenant_id text PRIMARY KEY,
    events_partition text NOT NULL UNIQUE,
    snapshots_partition text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE event_store.events (
    -- Allocation order only: sequences are not commit-ordered, so readers of the global order
    -- sort by (transaction_id, global_position) and never read past the oldest open transaction.
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id uuid NOT NULL,
    tenant_id text NOT NULL,
    aggregate_id text NOT NULL,
    aggregate_type text NOT NULL,
    sequence_number bigint NOT NULL CHECK (sequence_number > 0),
    event_type text NOT NULL,
    event_version integer NOT NULL CHECK (event_version > 0),
    data jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    command_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1 CHECK (version > 0),
    CONSTRAINT events_pkey PRIMARY KEY (tenant_id, event_id),
    CONSTRAINT events_stream_key UNIQUE (tenant_id, aggregate_id, sequence_number)
) PARTITION BY LIST (tenant_id);

CREATE INDEX events_global_order ON event_store.events (transaction_id, global_position);

CREATE TABLE event_store.events_default PARTITION OF event_store.events DEFAULT;

CREATE TABLE snapshots.aggregate_snapshots (
    snapshot_id uuid NOT NULL,
    aggregate_id text NOT NULL,
    aggregate_type text NOT NULL,
    sequence_number bigint NOT NULL CHECK (sequence_number > 0),
    -- The schema version of the aggregate state: a snapshot of another schema is never read.
    schema_version integer NOT NULL CHECK (schema_version > 0),
    state jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    tenant_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT aggregate_snapshots_pkey
        PRIMARY KEY (tenant_id, aggregate_id, schema_version, sequence_number)
) PARTITION BY LIST (tenant_id);

CREATE TABLE snapshots.aggregate_snapshots_default
    PARTITION OF snapshots.aggregate_snapshots DEFAULT;

-- Append one command's events to one stream, in one statement.
--
-- Idempotent: event ids are derived from the command id, so if the first one is stored the
-- command was appended before, and its stored rows are returned (duplicate = true) whatever
-- the expected version says now. Otherwise the expected version is checked
-- (-1 = any, 0 = the stream must not exist, n = the stream is at version n) and the events get
-- the next sequence numbers. Two writers racing past the check collide on events_stream_key
-- (or events_pkey for the same command) and the caller sorts it out.
CREATE FUNCTION event_store.append_to_stream(
    p_tenant_id text,
    p_aggregate_id text,
    p_aggregate_type text,
    p_expected_version bigint,
    p_command_id uuid,
    p_max_events integer,
    p_event_ids uuid[],
    p_event_types text[],
    p_event_versions integer[],
    p_data jsonb[],
    p_metadata jsonb[]
) RETURNS TABLE (
    event_id uuid,
    sequence_number bigint,
    global_position bigint,
    transaction_id xid8,
    duplicate boolean
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_first_sequence bigint;
    v_first_aggregate text;
    v_current bigint;
    v_type text;
BEGIN
    SELECT e.sequence_number, e.aggregate_id INTO v_first_sequence, v_first_aggregate
      FROM event_store.events e
     WHERE e.tenant_id = p_tenant_id AND e.event_id = p_event_ids[1];
    IF FOUND THEN
        IF v_first_aggregate <> p_aggregate_id THEN
            RAISE EXCEPTION USING
                ERRCODE = 'AC003',
                MESSAGE = format('command %s was already appended to stream %L, not %L',
                                 p_command_id, v_first_aggregate, p_aggregate_id);
        END IF;
        RETURN QUERY
            SELECT e.event_id, e.sequence_number, e.global_position, e.transaction_id, true
              FROM event_store.events e
             WHERE e.tenant_id = p_tenant_id AND e.aggregate_id = p_aggregate_id
               AND e.sequence_number >= v_first_sequence
               AND e.sequence_number < v_first_sequence + p_max_events
               AND e.command_id = p_command_id
             ORDER BY e.sequence_number;
        RETURN;
    END IF;

    SELECT e.sequence_number, e.aggregate_type INTO v_current, v_type
      FROM event_store.events e
     WHERE e.tenant_id = p_tenant_id AND e.aggregate_id = p_aggregate_id
     ORDER BY e.sequence_number DESC
     LIMIT 1;
    v_current := coalesce(v_current, 0);

    IF v_type IS NOT NULL AND v_type <> p_aggregate_type THEN
        RAISE EXCEPTION USING
            ERRCODE = 'AC002',
            MESSAGE = format('stream %L is a %s, not a %s', p_aggregate_id, v_type, p_aggregate_type);
    END IF;
    IF p_expected_version >= 0 AND v_current <> p_expected_version THEN
        RAISE EXCEPTION USING
            ERRCODE = 'AC001',
            MESSAGE = format('stream %L: expected version %s, actual %s',
                             p_aggregate_id, p_expected_version, v_current),
            DETAIL = v_current::text;
    END IF;

    RETURN QUERY
        INSERT INTO event_store.events AS e
            (event_id, tenant_id, aggregate_id, aggregate_type, sequence_number, event_type,
             event_version, data, metadata, command_id)
        SELECT u.event_id, p_tenant_id, p_aggregate_id, p_aggregate_type, v_current + u.ord,
               u.event_type, u.event_version, u.data, u.metadata, p_command_id
          FROM unnest(p_event_ids, p_event_types, p_event_versions, p_data, p_metadata)
               WITH ORDINALITY AS u(event_id, event_type, event_version, data, metadata, ord)
        RETURNING e.event_id, e.sequence_number, e.global_position, e.transaction_id, false;
END;
$$;
