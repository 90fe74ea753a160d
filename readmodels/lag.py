"""How far a position is behind the newest committed event, and what holds readers back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.errors import translated
from acci.eventstore.global_order import HORIZON
from acci.eventstore.records import START, Position

LAG_CAP: Final = 10_000
"""Lag in events is counted up to this many; a lag of ``LAG_CAP`` means at least that."""

# Lag is measured against the newest *committed* event, not the gap-free horizon that readers
# stop at: a projection held back by an open event-writing transaction has lag (and a stall),
# it is not "caught up". Counting (bounded) is the only honest measure: global positions are not
# commit-ordered, so "head.global_position - checkpoint.global_position" is wrong under
# (tx, gp) ordering. Of the pending events, those below the horizon are the ones read_all can
# reach now ("readable"); the rest wait for the transaction at the horizon, whose backend and
# age name the stall (pg_stat_activity for a session, pg_prepared_xacts for a prepared one;
# neither when it ended since the snapshot). Head, counts and horizon come from one statement:
# one snapshot, one round trip; pg_locks and the activity views are read only when needed.
# The transaction at the gap-free horizon (the ``horizon`` CTE before it), if it is still open:
# its backend's pid (NULL for a prepared transaction) and how long it has been open. What holds
# every gap-free reader back, named.
HOLDER: Final = (
    "holder AS ("
    " SELECT a.pid, extract(epoch FROM clock_timestamp() - a.xact_start) AS seconds"
    " FROM pg_stat_activity AS a, horizon"
    " WHERE a.backend_xid::text::bigint = (horizon.xid::text::bigint & 4294967295)"
    " UNION ALL"
    " SELECT NULL, extract(epoch FROM clock_timestamp() - p.prepared)"
    " FROM pg_prepared_xacts AS p, horizon"
    " WHERE p.transaction::text::bigint = (horizon.xid::text::bigint & 4294967295)"
    " LIMIT 1)"
)

LAG_STATEMENT: Final = (
    sql.SQL(
        "WITH horizon AS MATERIALIZED (SELECT {horizon} AS xid),"
        " pending AS ("
        " SELECT transaction_id, created_at FROM event_store.events"
        " WHERE (transaction_id, global_position) > (%(tx)s::text::xid8, %(gp)s)"
        " ORDER BY transaction_id, global_position LIMIT %(cap)s),"
        " head AS ("
        " SELECT transaction_id, global_position FROM event_store.events"
        " ORDER BY transaction_id DESC, global_position DESC LIMIT 1),"
        " counted AS ("
        " SELECT count(*) AS events,"
        " count(*) FILTER (WHERE transaction_id < (SELECT xid FROM horizon)) AS readable,"
        " coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS seconds"
        " FROM pending),"
        " {holder}"
        " SELECT c.events, c.readable, c.seconds,"
        " (SELECT transaction_id FROM head), (SELECT global_position FROM head),"
        " c.events > c.readable,"
        " CASE WHEN c.events > c.readable THEN (SELECT pid FROM holder) END,"
        " CASE WHEN c.events > c.readable THEN (SELECT seconds FROM holder) END"
        " FROM counted AS c"
    )
    .format(horizon=sql.SQL(HORIZON), holder=sql.SQL(HOLDER))
    .as_string(None)
)


@dataclass(frozen=True, slots=True)
class Stall:
    """Committed events wait behind an open event-writing transaction (the horizon's)."""

    seconds: float
    """How long that transaction has been open (0 if it ended since it was seen)."""
    pid: int | None
    """Its backend's pid (None for a prepared transaction, or if it ended since)."""


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a position is behind the newest committed event."""

    head: Position
    """The newest committed event (readers may not reach it yet: see ``stall``)."""
    events: int
    """Events committed after the position (up to the cap)."""
    seconds: float
    """Age of the oldest of them (0 when there are none)."""
    readable: int = 0
    """Of ``events``, those ``read_all`` can reach now."""
    stall: Stall | None = None
    """Set when some of ``events`` wait for an open event-writing transaction to end."""
    measured: bool = True
    """False for the runner's shortcut after a batch that read to the end (lag 0 as of that
    read, head unknown): measure again to report it."""

    @classmethod
    def none_at(cls, position: Position) -> Lag:
        """No readable lag at ``position`` as of a read that reached the end (not measured)."""
        return cls(head=position, events=0, seconds=0.0, measured=False)


async def measure_lag(pool: AsyncConnectionPool, position: Position, *, cap: int = LAG_CAP) -> Lag:
    """How far ``position`` is behind the newest committed event, in one statement."""
    params = lag_params(position, cap=cap)
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(LAG_STATEMENT, params)
            row = await cur.fetchone()
    assert row is not None  # an aggregate: always one row
    return lag_of_row(row)


def lag_params(position: Position, *, cap: int = LAG_CAP) -> dict[str, object]:
    """``LAG_STATEMENT``'s parameters for ``position``."""
    return {"tx": str(position.transaction_id), "gp": position.global_position, "cap": cap}


def lag_of_row(row: tuple[Any, ...]) -> Lag:
    """``LAG_STATEMENT``'s one row as a Lag."""
    events, readable, seconds, tx, gp, stalled, pid, stall_seconds = row
    return Lag(
        head=Position(int(tx), int(gp)) if tx is not None else START,
        events=int(events),
        seconds=float(seconds),
        readable=int(readable),
        stall=Stall(float(stall_seconds or 0.0), pid) if stalled else None,
    )
