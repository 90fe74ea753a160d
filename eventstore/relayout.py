"""Migration 008's data move: from one LIST partition per tenant to one table keyed by tenant.

One partition per tenant made every global-order read plan and lock every tenant (README,
"Tenant layout"), so the events and snapshots move into one table each, keyed by tenant. The
move runs while the old layout keeps serving, is resumable, and is safe against writers that
still run the old code:

1. **prepare** — the new tables (``*_next``), a progress table, and a version of the writer-lock
   trigger that, once the move is done, refuses inserts into the old partitions (ACW02) instead
   of letting an old process write where nobody reads any more.
2. **copy**, online, one old partition at a time (a statement over the partitioned parent would
   plan and lock every tenant, the very thing being fixed): events in batches in gap-free order
   (below the horizon, so a late-committing transaction is waited for, never passed over), each
   batch with its commands' transaction ids and its last position saved in the same
   transaction; then the snapshots.
3. **final pass**, holding the writer lock exclusively (session-level: writers wait in their
   trigger, before they have a transaction id, so readers are not held back): the rest of each
   partition, then **swap** the tables' names in one short transaction.
4. **clean up**: drop the old partitions one per transaction, then their parents.

Killed anywhere, the next ``acci db migrate`` picks up where this one stopped: every step is
idempotent and the catalog says which step was reached. Snapshots saved by an old process
between the final pass and the swap may be missing afterwards; they are a cache of the events
and are taken again.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import psycopg
from psycopg import sql

from acci.eventstore.global_order import HORIZON, WRITER_LOCK

log = logging.getLogger(__name__)

BATCH: Final = 10_000

# Fixed-width columns first, so rows carry no alignment padding; the same column names as before.
_EVENT_COLUMNS: Final = (
    "global_position",
    "transaction_id",
    "sequence_number",
    "created_at",
    "event_id",
    "command_id",
    "event_version",
    "version",
    "tenant_id",
    "aggregate_type",
    "aggregate_id",
    "event_type",
    "data",
    "metadata",
)
_SNAPSHOT_COLUMNS: Final = (
    "sequence_number",
    "created_at",
    "snapshot_id",
    "schema_version",
    "tenant_id",
    "aggregate_type",
    "aggregate_id",
    "state",
    "metadata",
)

# The layout (DESIGN §4, README "Tenant layout"): one table keyed by tenant. The primary key is
# the tenant's own gap-free order, so one tenant's events are one index range (its read_all,
# head, export and delete); the stream key serves loads and appends; the global order serves
# read_all. Event ids are unique by construction (UUIDv5 of tenant, command id and index, with
# command ids unique in event_store.commands), so they need no index of their own.
_PREPARE: Final = """
CREATE TABLE IF NOT EXISTS event_store.events_next (
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    sequence_number bigint NOT NULL CHECK (sequence_number > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    event_id uuid NOT NULL,
    command_id uuid NOT NULL,
    event_version integer NOT NULL CHECK (event_version > 0),
    version integer NOT NULL DEFAULT 1 CHECK (version > 0),
    tenant_id text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    event_type text NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT events_next_pkey PRIMARY KEY (tenant_id, transaction_id, global_position),
    CONSTRAINT events_next_stream_key
        UNIQUE (tenant_id, aggregate_id, aggregate_type, sequence_number)
);
CREATE INDEX IF NOT EXISTS events_next_global_order
    ON event_store.events_next (transaction_id, global_position);

CREATE TABLE IF NOT EXISTS snapshots.aggregate_snapshots_next (
    sequence_number bigint NOT NULL CHECK (sequence_number > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    snapshot_id uuid NOT NULL,
    schema_version integer NOT NULL CHECK (schema_version > 0),
    tenant_id text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    state jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT aggregate_snapshots_next_pkey
        PRIMARY KEY (tenant_id, aggregate_id, aggregate_type, schema_version, sequence_number)
);

-- Where the copy of each old events partition has got to, in its gap-free order.
CREATE TABLE IF NOT EXISTS event_store.relayout_progress (
    partition text PRIMARY KEY,
    transaction_id xid8 NOT NULL,
    global_position bigint NOT NULL
);

-- A command's events are stored by one transaction: its id finds them through the primary key.
ALTER TABLE event_store.commands ADD COLUMN IF NOT EXISTS transaction_id xid8;

-- The writer-lock trigger of migration 005, plus, after the lock: an insert into a table that
-- is neither event_store.events nor one of its partitions is refused. Until the swap that is
-- never the case; after it, an old process appending to its tenant's old partition gets ACW02
-- instead of writing an event nobody would read. Migration 008 puts back the plain version.
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
    IF NOT EXISTS (
        SELECT FROM pg_class AS live
         WHERE live.relnamespace = 'event_store'::regnamespace AND live.relname = 'events'
           AND (live.oid = TG_RELID
                OR EXISTS (SELECT FROM pg_inherits
                            WHERE inhparent = live.oid AND inhrelid = TG_RELID))
    ) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ACW02',
            MESSAGE = format(
                'insert into %s refused: the event store moved to one table keyed by tenant'
                ' (migration 008)', TG_TABLE_NAME),
            HINT = 'This process runs an older ACCI: restart it on the new version.';
    END IF;
    RETURN NULL;
END;
$$;
"""

_PARTITIONS: Final = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = %s::regclass ORDER BY 1"
)

# One batch of one old partition, in gap-free order from where the last batch stopped; the
# new position is saved by the same transaction. Without the horizon (final pass, writers
# stopped) it takes everything that is left.
_COPY_EVENTS: Final = """
WITH batch AS MATERIALIZED (
    SELECT {columns} FROM {partition}
     WHERE (transaction_id, global_position) > (%(tx)s::text::xid8, %(gp)s)
       AND (NOT %(gap_free)s OR transaction_id < {horizon})
     ORDER BY transaction_id, global_position
     LIMIT %(limit)s
), copied AS (
    INSERT INTO event_store.events_next ({columns}) OVERRIDING SYSTEM VALUE
    SELECT {columns} FROM batch
    ON CONFLICT DO NOTHING
), commands AS (
    -- The transaction that stored these events, on their commands' rows (one command's events
    -- are all stored by one transaction): by primary key, so only this batch's rows are read.
    UPDATE event_store.commands AS c SET transaction_id = b.transaction_id
      FROM batch AS b
     WHERE c.command_id = b.command_id AND c.tenant_id = b.tenant_id
       AND c.transaction_id IS NULL
), last AS (
    SELECT transaction_id, global_position FROM batch
     ORDER BY transaction_id DESC, global_position DESC LIMIT 1
), saved AS (
    INSERT INTO event_store.relayout_progress AS p (partition, transaction_id, global_position)
    SELECT %(name)s, transaction_id, global_position FROM last
    ON CONFLICT (partition) DO UPDATE
       SET transaction_id = excluded.transaction_id, global_position = excluded.global_position
)
SELECT (SELECT count(*) FROM batch), (SELECT transaction_id::text FROM last),
       (SELECT global_position FROM last)
"""

_COPY_SNAPSHOTS: Final = """
INSERT INTO snapshots.aggregate_snapshots_next ({columns})
SELECT {columns} FROM {partition}
ON CONFLICT DO NOTHING
"""

_SWAP: Final = """
LOCK TABLE ONLY event_store.events, ONLY snapshots.aggregate_snapshots IN ACCESS EXCLUSIVE MODE;

ALTER TABLE event_store.events RENAME TO events_partitioned;
ALTER TABLE event_store.events_partitioned RENAME CONSTRAINT events_pkey
    TO events_partitioned_pkey;
ALTER TABLE event_store.events_partitioned RENAME CONSTRAINT events_stream_key
    TO events_partitioned_stream_key;
ALTER INDEX event_store.events_global_order RENAME TO events_partitioned_global_order;
ALTER SEQUENCE event_store.events_global_position_seq
    RENAME TO events_partitioned_global_position_seq;

ALTER TABLE event_store.events_next RENAME TO events;
ALTER TABLE event_store.events RENAME CONSTRAINT events_next_pkey TO events_pkey;
ALTER TABLE event_store.events RENAME CONSTRAINT events_next_stream_key TO events_stream_key;
ALTER INDEX event_store.events_next_global_order RENAME TO events_global_order;
ALTER SEQUENCE event_store.events_next_global_position_seq RENAME TO events_global_position_seq;
-- New positions continue after every position the old layout handed out.
SELECT setval('event_store.events_global_position_seq', greatest(
    1,
    (SELECT last_value FROM event_store.events_partitioned_global_position_seq),
    (SELECT coalesce(max(global_position), 0) FROM event_store.events)));

CREATE TRIGGER events_register_writer BEFORE INSERT ON event_store.events
    FOR EACH STATEMENT EXECUTE FUNCTION event_store.register_event_writer();

ALTER TABLE snapshots.aggregate_snapshots RENAME TO aggregate_snapshots_partitioned;
ALTER TABLE snapshots.aggregate_snapshots_partitioned RENAME CONSTRAINT aggregate_snapshots_pkey
    TO aggregate_snapshots_partitioned_pkey;
ALTER TABLE snapshots.aggregate_snapshots_next RENAME TO aggregate_snapshots;
ALTER TABLE snapshots.aggregate_snapshots RENAME CONSTRAINT aggregate_snapshots_next_pkey
    TO aggregate_snapshots_pkey;
"""

_OLD_PARENTS: Final = (
    ("event_store", "events_partitioned"),
    ("snapshots", "aggregate_snapshots_partitioned"),
)


async def move(conn: psycopg.AsyncConnection[Any]) -> None:
    """Bring the store to one table per kind, from wherever an earlier run stopped.

    ``conn`` is an autocommit connection that holds the migration lock; nothing else may use it.
    """
    if await _partitioned(conn, "event_store.events"):
        await conn.execute(_PREPARE)
        await _copy(conn, gap_free=True)
        await _final_pass_and_swap(conn)
    await _drop_old(conn)


async def _partitioned(conn: psycopg.AsyncConnection[Any], table: str) -> bool:
    cur = await conn.execute(
        "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", (table,)
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def _partitions(conn: psycopg.AsyncConnection[Any], parent: str) -> list[str]:
    cur = await conn.execute(_PARTITIONS, (parent,))
    return [str(r[0]) for r in await cur.fetchall()]


async def _copy(conn: psycopg.AsyncConnection[Any], *, gap_free: bool) -> None:
    """Every old partition's events (with their commands' transaction ids) and snapshots."""
    events = await _partitions(conn, "event_store.events")
    started, moved = time.monotonic(), 0
    for done, name in enumerate(events, 1):
        moved += await _copy_partition(conn, name, gap_free=gap_free)
        if done % 100 == 0 or done == len(events):
            log.info(
                "moving events to one table",
                extra={
                    "partitions_done": done,
                    "partitions": len(events),
                    "events_moved": moved,
                    "final_pass": not gap_free,
                    "seconds": round(time.monotonic() - started, 1),
                },
            )
    columns = sql.SQL(", ").join(map(sql.Identifier, _SNAPSHOT_COLUMNS))
    for name in await _partitions(conn, "snapshots.aggregate_snapshots"):
        await conn.execute(
            sql.SQL(_COPY_SNAPSHOTS).format(
                columns=columns, partition=sql.Identifier("snapshots", name)
            )
        )


async def _copy_partition(conn: psycopg.AsyncConnection[Any], name: str, *, gap_free: bool) -> int:
    cur = await conn.execute(
        "SELECT transaction_id::text, global_position FROM event_store.relayout_progress"
        " WHERE partition = %s",
        (name,),
    )
    row = await cur.fetchone()
    tx, gp = (str(row[0]), int(row[1])) if row else ("0", 0)
    query = sql.SQL(_COPY_EVENTS).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, _EVENT_COLUMNS)),
        partition=sql.Identifier("event_store", name),
        horizon=sql.SQL(HORIZON),
    )
    moved = 0
    while True:
        params = {"tx": tx, "gp": gp, "gap_free": gap_free, "limit": BATCH, "name": name}
        async with conn.transaction():
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        count = int(row[0]) if row else 0
        if count == 0:
            return moved
        moved += count
        assert row is not None  # count > 0
        tx, gp = str(row[1]), int(row[2])


async def _final_pass_and_swap(conn: psycopg.AsyncConnection[Any]) -> None:
    """With event writers stopped, copy what is left and put the new tables in place."""
    log.info("stopping event writers for the final pass of the move")
    await conn.execute("SELECT pg_advisory_lock(%s, %s)", WRITER_LOCK)
    try:
        await _copy(conn, gap_free=False)
        async with conn.transaction():
            await conn.execute(_SWAP)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s, %s)", WRITER_LOCK)
    log.info("event store moved to one table keyed by tenant")


async def _drop_old(conn: psycopg.AsyncConnection[Any]) -> None:
    """Drop the old layout, one partition per transaction (one statement would lock them all)."""
    for schema, parent in _OLD_PARENTS:
        cur = await conn.execute("SELECT to_regclass(%s)", (f"{schema}.{parent}",))
        if (await cur.fetchone() or (None,))[0] is None:
            continue
        names = await _partitions(conn, f"{schema}.{parent}")
        for done, name in enumerate(names, 1):
            await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name)))
            if done % 500 == 0:
                log.info("dropping the old tenant partitions", extra={"dropped": done})
        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, parent)))
