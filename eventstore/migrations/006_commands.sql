-- Command identity (DESIGN §3): one row per command that stored events, written by the same
-- statement that appends them (eventstore/append.py).
--
-- A command id names one command, across every tenant: the same id sent again with another
-- command (type, tenant, aggregate or payload) is refused, and the refusal says nothing about
-- the first one. `fingerprint` is the SHA-256 of the command as the domain parsed it (NULL for
-- appends made through the store's API without one, and for rows taken over from before this
-- table: those are matched by tenant and aggregate). `event_ids` lists every event the command
-- stored, in every stream it touched, so a re-send (or the publisher) finds them by primary key.
CREATE TABLE event_store.commands (
    command_id uuid PRIMARY KEY,
    tenant_id text NOT NULL,
    aggregate_id text NOT NULL,
    fingerprint text,
    event_ids uuid[] NOT NULL CHECK (cardinality(event_ids) > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Commands appended before this migration. A command id that was (wrongly) used in two tenants
-- keeps the tenant of its first event; the other tenant's events stay readable in their streams.
INSERT INTO event_store.commands (command_id, tenant_id, aggregate_id, fingerprint, event_ids)
SELECT DISTINCT ON (e.command_id)
       e.command_id, e.tenant_id, e.aggregate_id, NULL,
       (SELECT array_agg(o.event_id ORDER BY o.global_position)
          FROM event_store.events o
         WHERE o.tenant_id = e.tenant_id AND o.command_id = e.command_id)
  FROM event_store.events e
 ORDER BY e.command_id, e.global_position;
