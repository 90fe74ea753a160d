"""Where each projection is in the global order, and whether it is running or paused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.errors import translated
from acci.eventstore.records import Position
from acci.readmodels.errors import ProjectionError

CheckpointStatus = Literal["running", "paused"]

# A read model's checkpoint starts on its live version's tables.
_ENSURE: Final = (
    "INSERT INTO read_models.checkpoints (projection, version) VALUES (%(name)s, COALESCE("
    "(SELECT version FROM read_models.versions WHERE read_model = %(name)s AND state = 'live'),"
    " 1)) ON CONFLICT DO NOTHING"
)
_SELECT: Final = (
    "SELECT projection, transaction_id, global_position, status, last_error, updated_at,"
    " version FROM read_models.checkpoints"
)
_GET: Final = _SELECT + " WHERE projection = %s"
_ALL: Final = _SELECT + " ORDER BY projection"
_LOCK: Final = _GET + " FOR UPDATE"
_MOVE: Final = (
    "UPDATE read_models.checkpoints SET transaction_id = %s, global_position = %s,"
    " last_error = %s, updated_at = now() WHERE projection = %s"
)
_SET_STATUS: Final = (
    "UPDATE read_models.checkpoints SET status = %s, last_error = %s, updated_at = now()"
    " WHERE projection = %s"
    " RETURNING projection, transaction_id, global_position, status, last_error, updated_at,"
    " version"
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A projection's checkpoint row; ``version`` is the read-model version whose tables its
    projection writes (``readmodels/read_model.py``)."""

    projection: str
    position: Position
    status: CheckpointStatus
    last_error: str | None
    updated_at: datetime | None
    version: int = 1

    @property
    def paused(self) -> bool:
        return self.status == "paused"


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    name, tx, gp, status, last_error, updated_at, version = row
    return Checkpoint(name, Position(int(tx), int(gp)), status, last_error, updated_at, version)


class CheckpointStore:
    """Reads and moves the rows of ``read_models.checkpoints``."""

    def __init__(self, pool: AsyncConnectionPool, *, create: bool = True) -> None:
        """``create=False``: a missing checkpoint is an error, not a new one at 0 (a rebuild's,
        whose version was dropped: it must not start over on another version's tables)."""
        self._pool = pool
        self._create = create

    async def get(self, projection: str) -> Checkpoint:
        """The projection's checkpoint; a projection seen for the first time starts at 0."""
        with translated():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_GET, (projection,))
                row = await cur.fetchone()
                if row is None and not self._create:
                    raise ProjectionError(f"checkpoint {projection!r} does not exist (dropped)")
                if row is None:
                    await conn.execute(_ENSURE, {"name": projection})
                    cur = await conn.execute(_GET, (projection,))
                    row = await cur.fetchone()
        assert row is not None  # ensured just before
        return _checkpoint(row)

    async def all(self) -> list[Checkpoint]:
        """Every projection's checkpoint, by name."""
        with translated():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_ALL)
                return [_checkpoint(r) for r in await cur.fetchall()]

    async def set_status(
        self, projection: str, status: CheckpointStatus, *, last_error: str | None = None
    ) -> Checkpoint:
        """Pause or resume a projection (resuming clears its last error)."""
        with translated():
            async with self._pool.connection() as conn:
                await conn.execute(_ENSURE, {"name": projection})
                cur = await conn.execute(_SET_STATUS, (status, last_error, projection))
                row = await cur.fetchone()
        assert row is not None
        return _checkpoint(row)

    # -- inside the caller's transaction --------------------------------------------------

    @staticmethod
    async def start_lock_at(
        conn: AsyncConnection[Any], projection: str, checkpoint: Checkpoint
    ) -> AsyncCursor[Any]:
        """Lock the checkpoint, to go on only if it is still where ``checkpoint`` says (in
        pipeline mode the answer comes with the next sync): read it with ``locked``.

        A second runner of the same projection (a retried activity racing a stale one) finds
        it moved and applies nothing. The row is locked wherever it is, waiting for a
        transaction that holds it, and compared after: a position in the WHERE clause would be
        tested against the row as last committed, and not wait for a transaction that is moving
        it to exactly that position (the next batch of a pipelined catch-up).
        """
        return await conn.execute(_LOCK, (projection,))

    @staticmethod
    async def locked(cursor: AsyncCursor[Any], checkpoint: Checkpoint) -> Checkpoint | None:
        """The checkpoint ``start_lock_at`` locked; None if it was not where ``checkpoint``
        says (its position, or the version it writes: a switch moved it)."""
        row = await cursor.fetchone()
        found = _checkpoint(row) if row else None
        if found is None or (found.position, found.version) != (
            checkpoint.position,
            checkpoint.version,
        ):
            return None
        return found

    @staticmethod
    async def lock(conn: AsyncConnection[Any], projection: str) -> Checkpoint:
        """Lock the checkpoint wherever it is."""
        await conn.execute(_ENSURE, {"name": projection})
        cur = await conn.execute(_LOCK, (projection,))
        row = await cur.fetchone()
        assert row is not None
        return _checkpoint(row)

    @staticmethod
    async def move(
        conn: AsyncConnection[Any],
        projection: str,
        position: Position,
        *,
        last_error: str | None = None,
    ) -> None:
        """Set the checkpoint (locked by the caller) to ``position``."""
        await conn.execute(_MOVE, (*position, last_error, projection))

    @staticmethod
    async def set_status_locked(
        conn: AsyncConnection[Any],
        projection: str,
        status: CheckpointStatus,
        *,
        last_error: str | None,
    ) -> None:
        """Pause or resume inside the caller's transaction."""
        await conn.execute(_SET_STATUS, (status, last_error, projection))
