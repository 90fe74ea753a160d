"""Where the projections and the gap-free horizon stand, read on one synchronous connection.

For the worker's metrics scrape, which runs in the HTTP server's thread, not on the event loop:
every figure is measured from the database at the time of the scrape (a paused projection's lag
grows while it is paused), on a connection of its own with a short statement timeout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import psycopg
from psycopg import sql

from acci.eventstore.global_order import HORIZON
from acci.eventstore.records import Position
from acci.readmodels.lag import HOLDER, LAG_CAP, LAG_STATEMENT, Lag, lag_of_row, lag_params

# Committed events that gap-free readers cannot reach yet (those of transactions at or after
# the horizon, capped), and how long the transaction at the horizon has been open: the store's
# own stall, whatever each projection's position.
_HORIZON_STALL: Final = (
    sql.SQL(
        "WITH horizon AS MATERIALIZED (SELECT {horizon} AS xid),"
        " held AS (SELECT 1 FROM event_store.events"
        " WHERE transaction_id >= (SELECT xid FROM horizon) LIMIT %(cap)s),"
        " {holder}"
        " SELECT (SELECT count(*) FROM held), (SELECT seconds FROM holder)"
    )
    .format(horizon=sql.SQL(HORIZON), holder=sql.SQL(HOLDER))
    .as_string(None)
)

_CHECKPOINTS: Final = (
    "SELECT projection, transaction_id, global_position, status FROM read_models.checkpoints"
    " WHERE projection = ANY(%s::text[])"
)

_OPEN_DEAD_LETTERS: Final = (
    "SELECT projection, count(*) FROM read_models.dead_letters"
    " WHERE resolution IS NULL AND projection = ANY(%s::text[]) GROUP BY projection"
)


@dataclass(frozen=True, slots=True)
class HorizonStall:
    """How far the gap-free horizon trails the newest committed event."""

    events: int
    """Committed events readers cannot reach yet (up to the lag cap)."""
    seconds: float
    """How long the transaction holding them back has been open (0 when none are held)."""


@dataclass(frozen=True, slots=True)
class ProjectionStanding:
    """A projection's checkpoint status, lag and parked events, as of one scrape."""

    projection: str
    status: Literal["running", "paused"] | None
    """The checkpoint's status (None: the projection has no checkpoint yet)."""
    lag: Lag
    dead_letters: int


def horizon_stall(conn: psycopg.Connection[Any], *, cap: int = LAG_CAP) -> HorizonStall:
    """The store's stall: committed events held back by an open event-writing transaction."""
    row = conn.execute(_HORIZON_STALL, {"cap": cap}).fetchone()
    assert row is not None  # aggregates: always one row
    held, seconds = int(row[0]), float(row[1] or 0.0)
    return HorizonStall(held, seconds if held else 0.0)


def projection_standings(
    conn: psycopg.Connection[Any], projections: Iterable[str]
) -> list[ProjectionStanding]:
    """Each named projection's status, lag (measured now) and open dead letters."""
    names = sorted(set(projections))
    checkpoints = {
        name: (Position(int(tx), int(gp)), status)
        for name, tx, gp, status in conn.execute(_CHECKPOINTS, (names,)).fetchall()
    }
    parked = dict(conn.execute(_OPEN_DEAD_LETTERS, (names,)).fetchall())
    standings = []
    for name in names:
        position, status = checkpoints.get(name, (Position.start(), None))
        row = conn.execute(LAG_STATEMENT, lag_params(position)).fetchone()
        assert row is not None
        standings.append(
            ProjectionStanding(name, status, lag_of_row(row), int(parked.get(name, 0)))
        )
    return standings
