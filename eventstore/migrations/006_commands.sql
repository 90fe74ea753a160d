-- Command identity (DESIGN §3): one row per command that stored events, written by the same
-- statement that appends them (eventstore/append.py).
--
-- A command id names one command, across every tenant: the same id sent again with another
-- command (type, tenant, aggregate or payload) is refused, and the refusal says nothing about
-- the first one. `fingerprint` is the SHA-256 of the command as the domain parsed it; it is
-- NULL for appends made through the store's API without one and for commands stored before
-- this table, which are compared by tenant, stream, command type and their events instead.
-- `event_ids` lists every event the command stored, in every stream it touched (in order), so
-- a re-send or the publisher finds them by primary key.
CREATE TABLE event_store.commands (
    command_id uuid PRIMARY KEY,
    tenant_id text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    command_type text,
    fingerprint text,
    event_ids uuid[] NOT NULL CHECK (cardinality(event_ids) > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Commands stored before this migration, in one pass over the events. A command id that was
-- (wrongly) used in two tenants keeps the tenant of its first event; the other tenant's events
-- stay readable in their streams.
INSERT INTO event_store.commands
    (command_id, tenant_id, aggregate_type, aggregate_id, command_type, fingerprint, event_ids)
SELECT DISTINCT ON (command_id)
       command_id, tenant_id, aggregate_type, aggregate_id, command_type, NULL, event_ids
  FROM (SELECT command_id, tenant_id, min(global_position) AS first,
               (array_agg(aggregate_type ORDER BY global_position))[1] AS aggregate_type,
               (array_agg(aggregate_id ORDER BY global_position))[1] AS aggregate_id,
               (array_agg(metadata->>'command_type' ORDER BY global_position))[1]
                 AS command_type,
               array_agg(event_id ORDER BY global_position) AS event_ids
          FROM event_store.events
         GROUP BY command_id, tenant_id) AS stored
 ORDER BY command_id, first;
