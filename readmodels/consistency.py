"""Read-your-writes: wait until the projections a query reads have passed a write's position."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client import Gauge, Histogram
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.records import Position
from acci.readmodels.errors import ProjectionError
from acci.readmodels.handlers import fetch

CONSISTENCY_WAITING: Final = Gauge(
    "acci_query_consistency_waiting",
    "Queries waiting right now for a projection to reach their write's position",
)
CONSISTENCY_WAIT_SECONDS: Final = Histogram(
    "acci_query_consistency_wait_seconds",
    "How long read-your-writes queries waited for the projections",
)

_CHECKPOINTS: Final = sql.SQL(
    "SELECT projection, transaction_id, global_position, status, last_error"
    " FROM read_models.checkpoints WHERE projection = ANY(%s)"
)


class NotYetProjectedError(ProjectionError):
    """A projection did not reach the wanted position within the wait's bound."""

    def __init__(
        self,
        message: str,
        *,
        position: Position,
        behind: dict[str, Position | None],
    ) -> None:
        super().__init__(message)
        self.position = position
        # Each lagging projection and where it stood (None: it has no checkpoint yet).
        self.behind = behind


@dataclass(frozen=True, slots=True)
class ProjectedTo:
    """Where a projection's checkpoint stands, whether it is paused, and its last error."""

    position: Position
    status: str
    last_error: str | None


async def projected_positions(
    pool: AsyncConnectionPool, projections: Sequence[str]
) -> dict[str, ProjectedTo]:
    """Each named projection's checkpoint (absent if the projection has none yet); read-only."""
    rows = await fetch(pool, _CHECKPOINTS, (list(projections),))
    return {
        row["projection"]: ProjectedTo(
            Position(row["transaction_id"], row["global_position"]),
            row["status"],
            row["last_error"],
        )
        for row in rows
    }


async def wait_until_projected(
    pool: AsyncConnectionPool,
    projections: Sequence[str],
    position: Position,
    *,
    timeout: float,  # noqa: ASYNC109 - the bound is part of the error it raises
    poll_interval: float = 0.01,
    max_poll_interval: float = 0.2,
) -> None:
    """Return once every named projection's checkpoint is at or past ``position``.

    Raises ``NotYetProjectedError`` (a ``ProjectionError``) when ``timeout`` seconds pass first.
    """
    wanted = tuple(dict.fromkeys(projections))
    if not wanted:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = poll_interval
    with CONSISTENCY_WAITING.track_inprogress(), CONSISTENCY_WAIT_SECONDS.time():
        while True:
            reached = await projected_positions(pool, wanted)
            # The global order is (transaction_id, global_position) compared as a pair: a
            # larger global_position in an earlier transaction does not mean that this
            # position was processed (DESIGN §5). Position is a tuple, so >= compares the pair.
            behind = [p for p in wanted if p not in reached or reached[p].position < position]
            if not behind:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _not_reached(position, timeout, behind, reached)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, max_poll_interval)


def _not_reached(
    position: Position,
    timeout: float,
    behind: list[str],
    reached: dict[str, ProjectedTo],
) -> NotYetProjectedError:
    clauses = []
    for name in behind:
        if (checkpoint := reached.get(name)) is None:
            at = "no checkpoint yet"
        else:
            at = f"at {checkpoint.position}"
            if checkpoint.status != "running":
                at += f", {checkpoint.status}"
            if checkpoint.last_error:
                at += f"; last error: {checkpoint.last_error}"
        clauses.append(
            f"read model {name!r} has not reached position {position} after {timeout:.1f} s ({at})"
        )
    return NotYetProjectedError(
        "; ".join(clauses),
        position=position,
        behind={name: reached[name].position if name in reached else None for name in behind},
    )
