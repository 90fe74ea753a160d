-- Event writers register before they get a transaction id (DESIGN §4, "Gap-free global order").
--
-- Readers of the global order stop at the oldest transaction that may still commit events
-- (eventstore/store.py, HORIZON). To tell those apart from every other write transaction in the
-- database (a subscriber's inbox, a read-model write, another application's session), a
-- transaction that inserts events first takes a shared transaction-level advisory lock, the
-- "writer lock", keys (1094927177, 1163286354) = ("ACCI", "EVWR"), held until it commits or
-- aborts. A reader then leaves out an open transaction it sees running without that lock.
--
-- That is only sound if a transaction holds the writer lock from *before* its transaction id
-- was assigned: a reader that saw the id in its snapshot, and then no writer lock, must be
-- able to conclude that the transaction will never insert an event. So the lock is taken by a
-- statement-level BEFORE INSERT trigger, which fires before the INSERT evaluates anything that
-- can assign an id (nextval, the transaction_id default, the rows themselves), and a
-- transaction that already has an id without the lock is refused (SQLSTATE ACW01): it may
-- already have been left out of a reader's horizon, and its events could be passed over.
--
-- Statement triggers are not inherited by partitions, and appends insert straight into the
-- tenant's partition (eventstore/append.py), so the trigger is on the parent (INSERT or COPY
-- through it), the DEFAULT partition and every tenant partition; eventstore/partitions.py
-- adds it to each new one before attaching it.
--
-- `acci.event_writer` (transaction-local) only saves taking the lock again on the next
-- statement of the same transaction; it rolls back with a savepoint together with the lock.
-- Its value names this very transaction (backend and start time), so a value left by a
-- session-level SET, ALTER ROLE ... SET or PGOPTIONS never passes for it: a transaction that
-- did not take the lock itself is always checked. (A session that deliberately forges the
-- value with SET LOCAL inside its transaction can still skip the check; only reading pg_locks
-- on every statement would close that, and such a session can write the log directly anyway.)

CREATE FUNCTION event_store.register_event_writer() RETURNS trigger
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

DO $$
DECLARE
    v_table regclass;
BEGIN
    FOR v_table IN
        SELECT 'event_store.events'::regclass
        UNION ALL
        SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'event_store.events'::regclass
    LOOP
        EXECUTE format(
            'CREATE TRIGGER events_register_writer BEFORE INSERT ON %s'
            ' FOR EACH STATEMENT EXECUTE FUNCTION event_store.register_event_writer()',
            v_table);
    END LOOP;
END;
$$;
