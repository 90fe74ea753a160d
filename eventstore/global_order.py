"""The gap-free global order: the horizon readers stop at, and the statements that read up to it.

``read_all`` pages and the heads (newest committed, newest readable) are built here, beside the
reasoning they depend on; ``eventstore/store.py`` runs them.
"""

from __future__ import annotations

from typing import Final, LiteralString

from psycopg import sql

from acci.eventstore.records import RecordedEvent

# An event's columns in RecordedEvent's order (its row factory builds one from each row).
COLUMNS: Final = sql.SQL(", ").join(map(sql.Identifier, RecordedEvent._fields))

# Gap-free global order (DESIGN §4): only rows of transactions older than every transaction
# still open that could have written them are read, in (transaction_id, global_position) order.
# An open transaction holds the reader back until it commits or aborts, so a late commit is
# delivered late, never skipped, and no lock serialises the writers.
#
# The horizon is the oldest transaction open in the statement's snapshot that may still commit
# events. Every transaction that inserts events holds the "writer lock" (a shared advisory lock
# of this database, keys WRITER_LOCK) from before it had a transaction id until it ends
# (migration 005: a trigger takes it, and refuses a transaction that got its id without it). So
# an open transaction that pg_locks shows running *without* the writer lock will never write
# an event: a subscriber's inbox, a read-model write, another application's session, anything
# in another database (advisory locks belong to one database). Only those are left out.
#
# "Running" is positively seen: the transaction's own ExclusiveLock on its id, granted, in a
# backend (pid not null: a prepared transaction counts). pg_locks is read once (MATERIALIZED),
# so its id rows and advisory rows are one consistent look at the lock table, and they are
# matched by virtual transaction, not by pid: the backend may have ended that transaction and
# begun another since the snapshot. Anything not positively seen counts (one that ended between
# the snapshot and the look, a prepared transaction), so the horizon can only be lower than it
# needs to be, never higher. pg_locks shows 32-bit xids: open ones are within 2^31 of each
# other, so their low 32 bits tell them apart. With no open transaction, pg_locks is not read.
WRITER_LOCK: Final = (1094927177, 1163286354)  # ("ACCI", "EVWR"); migration 005 takes it
HORIZON: Final = (
    "coalesce((WITH locks AS MATERIALIZED ("
    " SELECT locktype, virtualtransaction, transactionid::text::bigint AS xid FROM pg_locks"
    " WHERE granted AND pid IS NOT NULL"
    " AND ((locktype = 'transactionid' AND mode = 'ExclusiveLock')"
    " OR (locktype = 'advisory' AND classid = 1094927177 AND objid = 1163286354"
    " AND objsubid = 2"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))))"
    " SELECT min(open.xid) FROM pg_snapshot_xip(pg_current_snapshot()) AS open(xid)"
    " WHERE NOT EXISTS (SELECT FROM locks AS running"
    " WHERE running.locktype = 'transactionid'"
    " AND running.xid = (open.xid::text::bigint & 4294967295)"
    " AND NOT EXISTS (SELECT FROM locks AS writer WHERE writer.locktype = 'advisory'"
    " AND writer.virtualtransaction = running.virtualtransaction))),"
    " pg_snapshot_xmax(pg_current_snapshot()))"
)
_VISIBLE: Final = "transaction_id < " + HORIZON


def _read_all_query(*, by_tenant: bool, by_type: bool) -> str:
    where: list[LiteralString] = [
        "(transaction_id, global_position) > (%(tx)s::text::xid8, %(gp)s)",
        _VISIBLE,
    ]
    if by_tenant:
        where.append("tenant_id = %(tenant_id)s")
    if by_type:
        where.append("event_type = ANY(%(event_types)s::text[])")
    return (
        sql.SQL(
            "SELECT {columns} FROM event_store.events WHERE {where}"
            " ORDER BY transaction_id, global_position LIMIT %(limit)s"
        )
        .format(
            columns=COLUMNS,
            where=sql.SQL(" AND ").join(sql.SQL(w) for w in where),
        )
        .as_string(None)
    )


# The head is the newest *committed* event, not capped by the horizon: lag measured against it
# shows a reader held back by an open event-writing transaction as a stall, not as caught up.
# The readable head (what read_all can reach now) is capped.
def _head_query(*, by_tenant: bool, readable: bool) -> str:
    where: list[LiteralString] = [_VISIBLE] if readable else []
    if by_tenant:
        where.append("tenant_id = %(tenant_id)s")
    return (
        sql.SQL(
            "SELECT transaction_id, global_position FROM event_store.events{where}"
            " ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
        )
        .format(
            where=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(sql.SQL(w) for w in where)
            if where
            else sql.SQL("")
        )
        .as_string(None)
    )


READ_ALL: Final = {
    (t, e): _read_all_query(by_tenant=t, by_type=e) for t in (False, True) for e in (False, True)
}
HEAD: Final = {
    (t, r): _head_query(by_tenant=t, readable=r) for t in (False, True) for r in (False, True)
}

# One tenant's events between two positions, read in the caller's transaction with no horizon:
# a restore reads back what it wrote, up to a projection's checkpoint it holds locked.
READ_TENANT_IN: Final = sql.SQL(
    "SELECT {} FROM event_store.events WHERE tenant_id = %(tenant_id)s"
    " AND (transaction_id, global_position) > (%(tx)s::text::xid8, %(gp)s)"
    " AND (transaction_id, global_position) <= (%(to_tx)s::text::xid8, %(to_gp)s)"
    " ORDER BY transaction_id, global_position LIMIT %(limit)s"
).format(COLUMNS)
