-- Appends are one INSERT ... SELECT straight into the tenant's partition (eventstore/append.py):
-- the PL/pgSQL function of 001 cost a planning pass over every partition on each call.
DROP FUNCTION IF EXISTS event_store.append_to_stream(
    text, text, text, bigint, uuid, integer, uuid[], text[], integer[], jsonb[], jsonb[]
);
