"""One batch's transaction: lock the checkpoint, apply the changes, move the checkpoint, park.

Exactly-once effects come from the transaction, not from the caller: it locks the checkpoint row
only if it is still where the batch read it, applies every change and moves the checkpoint. A
crash anywhere rolls all of it back; a retry, or a second runner racing this one, finds the
checkpoint where the first commit left it. Nothing is applied twice and, because events are read
in the gap-free global order (DESIGN §4), nothing is passed over.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from psycopg import AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.errors import TenantKeyShreddedError
from acci.eventstore.records import RecordedEvent
from acci.readmodels.changes import Change, MissingRowError, apply_changes
from acci.readmodels.checkpoints import Checkpoint, CheckpointStatus, CheckpointStore
from acci.readmodels.db import applying_changes, translated
from acci.readmodels.dead_letters import DeadLetterStore
from acci.readmodels.errors import ChangeRefusedError
from acci.readmodels.failure_policy import FailurePolicy
from acci.readmodels.reports import EventFailure, describe
from acci.readmodels.versioned import tables_of

Batch = list[tuple[RecordedEvent, list[Change]]]
"""Events in the global order, each with the row changes its projection made of it."""


class Committed(NamedTuple):
    """What a batch's transaction applied, the event that failed (if one did), and the
    checkpoint as it is once committed."""

    applied: Batch
    failure: EventFailure | None
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class Parking:
    """Which failing event a batch parks, after how many attempts, and what follows.

    ``event_id`` is set on the last attempt at a failing event (the workflow counts them,
    ``attempts``, the first included); ``policy`` pauses the projection at the parked event or
    moves past it (None: the projection's own).
    """

    event_id: uuid.UUID | None = None
    attempts: int = 1
    policy: FailurePolicy | None = None

    @property
    def first_try(self) -> bool:
        """An ordinary batch: no failing event is being retried or parked."""
        return self.event_id is None and self.attempts == 1

    def parks(self, failure: EventFailure | None) -> bool:
        """Whether ``failure`` is of the event to park."""
        return (
            failure is not None and failure.event is not None and failure.event_id == self.event_id
        )


NO_PARKING = Parking()
"""An ordinary batch's: it parks nothing."""


@dataclass(frozen=True, slots=True)
class Turn:
    """A pipelined batch's place in line: it starts once ``previous`` is set (the batch before
    it holds the checkpoint lock, or ended), and sets ``held`` once it holds the lock itself.

    Without it, a batch could reach the database first, find the checkpoint where the batch
    before it starts rather than ends, and apply nothing (the catch-up then starts over).
    """

    previous: asyncio.Event | None
    held: asyncio.Event


class CheckpointMovedError(Exception):
    """The checkpoint is no longer where this batch read it (another runner, or a pause)."""


class BatchTransaction:
    """Commits one projection's batches, each with its checkpoint in one transaction."""

    def __init__(
        self,
        name: str,
        pool: AsyncConnectionPool,
        *,
        tables: frozenset[str],
        checkpoints: CheckpointStore,
        dead_letters: DeadLetterStore,
        park_shredded: bool = False,
    ) -> None:
        """``tables``: the projection's (its changes land in the checkpoint's version of
        them); ``park_shredded``: a shredded tenant's events are parked as they are passed over
        (else only passed over: setting ``shredded_events``)."""
        self._name = name
        self._tables = tables
        self._park_shredded = park_shredded
        self._pool = pool
        self._checkpoints = checkpoints
        self._dead_letters = dead_letters

    async def commit(
        self,
        checkpoint: Checkpoint,
        batch: Batch,
        failure: EventFailure | None,
        *,
        parking: Parking,
        turn: Turn | None = None,
    ) -> Committed:
        """Apply ``batch`` and move the checkpoint past it, in one transaction.

        ``failure`` is the event after ``batch`` whose handler failed, if one did: it is parked
        if ``parking`` says so. The fast path is pipelined: the checkpoint lock and every change
        in one round trip, the checkpoint move and the commit in a second. If the database
        refuses a change, the transaction is rolled back and replayed event by event, each in a
        savepoint, to find the event whose changes were refused: the events before it are
        committed, it is reported. With a ``turn`` (a pipelined catch-up), it starts once the
        batch before it holds the checkpoint lock (or has ended). Raises
        ``CheckpointMovedError`` (nothing applied) if the checkpoint moved since it was read,
        ``ReadModelUnavailableError`` if the database failed.
        """
        if turn is None:
            return await self._transact(checkpoint, batch, failure, parking, None)
        try:
            if turn.previous is not None:
                await turn.previous.wait()
            return await self._transact(checkpoint, batch, failure, parking, turn)
        finally:
            turn.held.set()

    async def _transact(
        self,
        checkpoint: Checkpoint,
        batch: Batch,
        failure: EventFailure | None,
        parking: Parking,
        turn: Turn | None,
    ) -> Committed:
        async with self._pool.connection() as conn:
            try:
                with applying_changes():
                    async with conn.pipeline(), conn.transaction():
                        lock = await self._checkpoints.start_lock_at(conn, self._name, checkpoint)
                        await apply_changes(
                            conn,
                            [c for _, changes in batch for c in changes],
                            tables_of(self._tables, checkpoint.version),
                        )
                        await self._locked(lock, checkpoint, turn)
                        after = await self._finish(conn, checkpoint, batch, failure, parking)
                return Committed(batch, failure, after)
            except (ChangeRefusedError, MissingRowError):
                pass
            return await self._replay(conn, checkpoint, batch, failure, parking, turn)

    async def _replay(
        self,
        conn: AsyncConnection[Any],
        checkpoint: Checkpoint,
        batch: Batch,
        failure: EventFailure | None,
        parking: Parking,
        turn: Turn | None,
    ) -> Committed:
        """The batch again, each event's changes in a savepoint, up to the first refused."""
        with translated():
            async with conn.transaction():
                await self._locked(
                    await self._checkpoints.start_lock_at(conn, self._name, checkpoint),
                    checkpoint,
                    turn,
                )
                good: Batch = []
                tables = tables_of(self._tables, checkpoint.version)
                for event, changes in batch:
                    try:
                        with applying_changes():
                            async with conn.transaction():  # a savepoint
                                await apply_changes(conn, changes, tables)
                    except (ChangeRefusedError, MissingRowError) as e:
                        failure = EventFailure(describe(e), event)
                        break
                    good.append((event, changes))
                after = await self._finish(conn, checkpoint, good, failure, parking)
        return Committed(good, failure, after)

    async def _locked(
        self, lock: AsyncCursor[Any], checkpoint: Checkpoint, turn: Turn | None = None
    ) -> None:
        """Go on only if the checkpoint was still where this batch read it, and running."""
        locked = await CheckpointStore.locked(lock, checkpoint)
        if locked is None or locked.paused:
            raise CheckpointMovedError
        if turn is not None:
            turn.held.set()

    async def _finish(
        self,
        conn: AsyncConnection[Any],
        checkpoint: Checkpoint,
        applied: Batch,
        failure: EventFailure | None,
        parking: Parking,
    ) -> Checkpoint:
        """Move the checkpoint past ``applied``; park the failed event if ``parking`` says so.

        Returns the checkpoint as it will be once committed.
        """
        position = applied[-1][0].position if applied else checkpoint.position
        error = failure.error if failure else None
        if self._park_shredded:
            for event, _ in applied:
                if not event.readable:
                    shredded = TenantKeyShreddedError(event.tenant_id)
                    await self._dead_letters.park(
                        conn, self._name, event, error=describe(shredded), attempts=1
                    )
        status: CheckpointStatus = "running"
        if failure is not None and failure.event is not None and parking.parks(failure):
            event = failure.event
            await self._dead_letters.park(
                conn, self._name, event, error=failure.error, attempts=parking.attempts
            )
            if parking.policy == "skip":
                position, error = event.position, None
            else:
                status = "paused"
                error = f"parked event {event.event_id} ({event.event_type}): {failure.error}"
                await self._checkpoints.set_status_locked(
                    conn, self._name, status, last_error=error
                )
        await self._checkpoints.move(conn, self._name, position, last_error=error)
        return Checkpoint(
            self._name, position, status, error, checkpoint.updated_at, checkpoint.version
        )
