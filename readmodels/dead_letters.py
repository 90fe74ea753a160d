"""Events a projection parked after its retries: listed, then retried or skipped by an operator."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.errors import translated
from acci.eventstore.records import Position, RecordedEvent

Resolution = Literal["retried", "skipped"]

_SELECT: Final = (
    "SELECT projection, event_id, tenant_id, event_type, transaction_id, global_position,"
    " error, attempts, parked_at, resolution, resolved_at FROM read_models.dead_letters"
)
_LIST: Final = (
    _SELECT + " WHERE (%(projection)s::text IS NULL OR projection = %(projection)s)"
    " AND (%(all)s OR resolution IS NULL) ORDER BY parked_at, projection, event_id"
)
_LOCK: Final = _SELECT + " WHERE projection = %s AND event_id = %s FOR UPDATE"
# Parking the same event again (after a resume) reopens its row and adds the new attempts.
_PARK: Final = (
    "INSERT INTO read_models.dead_letters (projection, event_id, tenant_id, event_type,"
    " transaction_id, global_position, error, attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (projection, event_id) DO UPDATE SET error = EXCLUDED.error,"
    " attempts = dead_letters.attempts + EXCLUDED.attempts, parked_at = now(),"
    " resolution = NULL, resolved_at = NULL"
)
_RESOLVE: Final = (
    "UPDATE read_models.dead_letters SET resolution = %s, resolved_at = now()"
    " WHERE projection = %s AND event_id = %s"
)
_NOT_APPLIED: Final = (
    "SELECT event_id FROM read_models.dead_letters WHERE projection = %s"
    " AND resolution IS DISTINCT FROM 'retried'"
)
_FAILED_AGAIN: Final = (
    "UPDATE read_models.dead_letters SET error = %s, attempts = attempts + 1"
    " WHERE projection = %s AND event_id = %s AND resolution IS NULL"
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A parked event: which projection, which event, why, and what became of it."""

    projection: str
    event_id: uuid.UUID
    tenant_id: str
    event_type: str
    position: Position
    error: str
    attempts: int
    parked_at: datetime
    resolution: Resolution | None
    resolved_at: datetime | None

    @property
    def open(self) -> bool:
        return self.resolution is None


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    projection, event_id, tenant_id, event_type, tx, gp, error, attempts, *rest = row
    parked_at, resolution, resolved_at = rest
    return DeadLetter(
        projection,
        event_id,
        tenant_id,
        event_type,
        Position(int(tx), int(gp)),
        error,
        attempts,
        parked_at,
        resolution,
        resolved_at,
    )


class DeadLetterStore:
    """Reads and writes ``read_models.dead_letters``."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def list(
        self, *, projection: str | None = None, include_resolved: bool = False
    ) -> list[DeadLetter]:
        """Parked events, oldest first: the open ones, or all with ``include_resolved``."""
        with translated():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_LIST, {"projection": projection, "all": include_resolved})
                return [_dead_letter(r) for r in await cur.fetchall()]

    async def not_applied(self, projection: str) -> set[uuid.UUID]:
        """The events ``projection`` parked and never applied (open, or skipped): a fold of the
        store that checks it leaves them out too."""
        with translated():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_NOT_APPLIED, (projection,))
                return {row[0] for row in await cur.fetchall()}

    async def failed_again(self, projection: str, event_id: uuid.UUID, error: str) -> None:
        """Record a retry from the dead-letter table that failed too."""
        with translated():
            async with self._pool.connection() as conn:
                await conn.execute(_FAILED_AGAIN, (error, projection, event_id))

    # -- inside the caller's transaction --------------------------------------------------

    @staticmethod
    async def park(
        conn: AsyncConnection[Any],
        projection: str,
        event: RecordedEvent,
        *,
        error: str,
        attempts: int,
    ) -> None:
        """Park ``event`` for ``projection``."""
        await conn.execute(
            _PARK,
            (
                projection,
                event.event_id,
                event.tenant_id,
                event.event_type,
                event.transaction_id,
                event.global_position,
                error,
                attempts,
            ),
        )

    @staticmethod
    async def lock(
        conn: AsyncConnection[Any], projection: str, event_id: uuid.UUID
    ) -> DeadLetter | None:
        """The parked event's row, locked; None if it was never parked."""
        cur = await conn.execute(_LOCK, (projection, event_id))
        row = await cur.fetchone()
        return _dead_letter(row) if row else None

    @staticmethod
    async def resolve(
        conn: AsyncConnection[Any], projection: str, event_id: uuid.UUID, resolution: Resolution
    ) -> None:
        """Close the parked event's row."""
        await conn.execute(_RESOLVE, (resolution, projection, event_id))
