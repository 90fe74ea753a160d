-- A stream is (tenant, aggregate type, aggregate id): streams of different aggregate types never
-- collide. Before, a user whose id was its tenant's id ('acme' in tenant 'acme') was refused,
-- because the tenant's stream already had that id ("'acme' is a Tenant, not a User"); so would
-- any two aggregate types that happen to share an id.
--
-- The type comes after the id in the keys, so a look-up by tenant and id alone (the audit
-- trail of every stream of that name) still uses them. Dropping and adding the constraint on
-- the partitioned parent rebuilds it on every partition; new partitions get it when they are
-- attached (eventstore/partitions.py).
ALTER TABLE event_store.events DROP CONSTRAINT events_stream_key;
ALTER TABLE event_store.events
    ADD CONSTRAINT events_stream_key
    UNIQUE (tenant_id, aggregate_id, aggregate_type, sequence_number);

ALTER TABLE snapshots.aggregate_snapshots DROP CONSTRAINT aggregate_snapshots_pkey;
ALTER TABLE snapshots.aggregate_snapshots
    ADD CONSTRAINT aggregate_snapshots_pkey
    PRIMARY KEY (tenant_id, aggregate_id, aggregate_type, schema_version, sequence_number);
