-- The event store and snapshots in one table each, keyed by tenant (DESIGN §4; README, "Tenant
-- layout"). One LIST partition per tenant made every global-order read plan and lock every
-- tenant. eventstore/relayout.py moves the data first (resumable, while the old layout keeps
-- serving) and puts the new tables in place; this runs once it is done.

-- Every command's transaction was filled in by the move; new appends record it themselves.
ALTER TABLE event_store.commands ALTER COLUMN transaction_id SET NOT NULL;

-- The partition registry and the move's bookkeeping are not needed any more.
DROP TABLE event_store.tenants;
DROP TABLE event_store.relayout_progress;

-- The writer-lock trigger as migration 005 made it: without the move's check that refuses
-- inserts into the old partitions (they are gone).
CREATE OR REPLACE FUNCTION event_store.register_event_writer() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_this text := pg_backend_pid()::text || '@' || transaction_timestamp()::text;
BEGIN
    IF current_setting('acci.event_writer', true) IS DISTINCT FROM v_this THEN
        IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'ACW01',
                MESSAGE = format(
                    'a transaction that already wrote something else cannot append events'
                    ' (insert into %s refused)', TG_TABLE_NAME),
                HINT = 'Append events first in the transaction, or in a transaction of their own.';
        END IF;
        PERFORM pg_advisory_xact_lock_shared(1094927177, 1163286354);
        PERFORM set_config('acci.event_writer', v_this, true);
    END IF;
    RETURN NULL;
END;
$$;
