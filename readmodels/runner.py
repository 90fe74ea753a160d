"""Runs one projection: the façade over the engine's modules, one job each.

- ``batch.py``: one batch (the events after the checkpoint, their changes, the report);
- ``transaction.py``: its transaction (checkpoint lock, changes, checkpoint move, parking);
- ``catchup.py``: a backlog, pipelined, read once through the shared log;
- ``waiting.py``: batches while appends come (``run_batches``, what the workflow's activity runs);
- ``resolution.py``: an operator's retry or skip of a parked event;
- ``lag.py``: how far a position is behind the newest committed event.

Exactly-once effects come from each batch's transaction (``transaction.py``). Retrying a failing
event is the caller's loop (the ``ProjectionWorkflow``): a batch applies the events before it,
reports it, and on the last attempt (``park=`` its id) parks it in the dead-letter table and
pauses the projection or moves past it, as the policy says.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

from psycopg import AsyncConnection, sql

from acci.eventstore.records import START, Position
from acci.eventstore.store import EventStore
from acci.readmodels.batch import Batches, OnCommitted
from acci.readmodels.catchup import catch_up
from acci.readmodels.checkpoints import CheckpointStore
from acci.readmodels.db import translated
from acci.readmodels.dead_letters import DeadLetterStore
from acci.readmodels.failure_policy import FailurePolicy
from acci.readmodels.lag import LAG_CAP, Lag
from acci.readmodels.projections import Projection
from acci.readmodels.reports import BatchReport
from acci.readmodels.resolution import DeadLetterResolution
from acci.readmodels.shared_log import SharedLog
from acci.readmodels.transaction import NO_PARKING, Parking
from acci.readmodels.versioned import versioned_tables
from acci.readmodels.waiting import Waiting, run_batches
from acci.readmodels.wakeups import Appended

_TRUNCATE: Final = "TRUNCATE read_models.{}"


class ProjectionRunner:
    """Applies one projection's events, batch by batch, exactly once."""

    def __init__(
        self,
        projection: Projection,
        store: EventStore,
        *,
        on_committed: OnCommitted | None = None,
        checkpoints: CheckpointStore | None = None,
        dead_letters: DeadLetterStore | None = None,
        lag_cap: int = LAG_CAP,
        shared_log: SharedLog | None = None,
        checkpoint: str | None = None,
    ) -> None:
        """``checkpoint`` names the checkpoint row it moves (default: the projection's name;
        a rebuild's is ``<name>@v<N>``)."""
        self.projection = projection
        self._pool = store.pool
        self.checkpoints = checkpoints or CheckpointStore(store.pool)
        self.dead_letters = dead_letters or DeadLetterStore(store.pool)
        self._batches = Batches(
            projection,
            store,
            checkpoints=self.checkpoints,
            dead_letters=self.dead_letters,
            lag_cap=lag_cap,
            on_committed=on_committed,
            checkpoint=checkpoint,
        )
        self._resolution = DeadLetterResolution(self._batches, self.dead_letters)
        # Runners over one store read a backlog once between them (readmodels/shared_log.py).
        self._log = shared_log or SharedLog.of(store)

    @property
    def name(self) -> str:
        """The checkpoint it moves (the projection's name unless it rebuilds a version)."""
        return self._batches.name

    # -- position -------------------------------------------------------------------------

    async def get_position(self) -> Position:
        """The position of the last event this projection applied (or passed over)."""
        return (await self.checkpoints.get(self.name)).position

    async def set_position(self, position: Position) -> None:
        """Move the checkpoint without touching any row (operators only: events between the
        old and the new position are then applied twice or never)."""
        await self.checkpoints.get(self.name)
        await self._transaction(lambda conn: self.checkpoints.move(conn, self.name, position))

    async def reset(self) -> None:
        """Empty the tables of the version this projection writes and go back to the start, in
        one transaction (benchmarks and tests; operators rebuild, ``acci readmodels rebuild``)."""
        await self.checkpoints.get(self.name)
        with translated():
            async with self._pool.connection() as conn, conn.transaction():
                checkpoint = await self.checkpoints.lock(conn, self.name)
                tables = versioned_tables(self.projection, checkpoint.version)
                for table in sorted(tables.values()):
                    await conn.execute(sql.SQL(_TRUNCATE).format(sql.Identifier(table)))
                await self.checkpoints.move(conn, self.name, START)

    async def set_paused(self, paused: bool) -> BatchReport:
        """Pause or resume the projection's checkpoint (resuming clears its last error);
        reports where it stands, its lag measured."""
        checkpoint = await self.checkpoints.set_status(self.name, "paused" if paused else "running")
        return await self._batches.report(checkpoint, 0)

    async def lag(self, position: Position | None = None) -> Lag:
        """How far ``position`` (default: the checkpoint) is behind the newest committed event."""
        if position is None:
            position = await self.get_position()
        return await self._batches.lag(position)

    # -- running --------------------------------------------------------------------------

    async def run_batch(
        self,
        *,
        limit: int = 500,
        park: uuid.UUID | None = None,
        attempts: int = 1,
        on_failure: FailurePolicy | None = None,
        until: Position | None = None,
    ) -> BatchReport:
        """Apply up to ``limit`` events after the checkpoint, with the new checkpoint.

        Stops before the first event that fails (its handler raised, or the database refused
        its changes) and reports it. If that event is ``park``, it is parked instead, counted
        as ``attempts`` attempts, and the projection pauses at it or moves past it
        (``on_failure``, default the projection's own policy). No event past ``until`` is
        applied.
        """
        parking = Parking(event_id=park, attempts=attempts, policy=on_failure)
        return await self._batches.run(limit=limit, parking=parking, until=until)

    async def run_batches(
        self,
        *,
        limit: int = 500,
        wait_seconds: float = 0.0,
        report_seconds: float = 0.0,
        gather_seconds: float = 0.0,
        poll_seconds: float = 0.0,
        quiet: Callable[[], AbstractContextManager[object]] = nullcontext,
        appended: Appended | None = None,
        parking: Parking = NO_PARKING,
        heartbeat: Callable[[], None] | None = None,
    ) -> BatchReport:
        """``run_batch`` (parking as ``parking`` says); then, while caught up, wait for appends
        and run again (``readmodels/waiting.py``).

        Returns the last batch's report, every batch's events counted: at once when a batch did
        not catch up (the caller records the progress), failed, parked or found the projection
        paused; ``report_seconds`` after it started if it applied anything (else it waits on);
        when no append came for ``wait_seconds``; or when ``appended`` is closed. Woken by an
        append, it lets ``gather_seconds`` pass before the next batch, so that a burst of
        commands costs one batch, not one each; unwoken, it runs one every ``poll_seconds``
        (inside ``quiet()``).
        ``heartbeat`` is called after every batch and at least every ``HEARTBEAT_SECONDS`` while
        waiting.
        """
        waiting = Waiting(
            wait_seconds=wait_seconds,
            report_seconds=report_seconds,
            gather_seconds=gather_seconds,
            poll_seconds=poll_seconds,
            quiet=quiet,
            appended=appended,
            heartbeat=heartbeat,
        )
        return await run_batches(
            self._batches, self._log, limit=limit, parking=parking, waiting=waiting
        )

    async def catch_up(
        self,
        *,
        limit: int = 500,
        budget: float | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> BatchReport:
        """Run batches until nothing visible is left, or an event fails, or it is paused, or
        ``budget`` seconds have passed; pipelined (``readmodels/catchup.py``). The report
        counts every batch's events; ``heartbeat`` is called after every batch."""
        return await catch_up(
            self._batches, self._log, limit=limit, budget=budget, heartbeat=heartbeat
        )

    # -- dead letters ---------------------------------------------------------------------

    async def retry_dead_letter(self, event_id: uuid.UUID) -> int:
        """Apply a parked event once more and close its row, in one transaction.

        Returns how many row changes it applied. A projection paused at the event moves past it
        (and stays paused until resumed). Fails with ``ProjectionError`` if the event fails
        again (its row stays open, its attempts counted), ``NotFoundError`` if it was never
        parked.
        """
        return await self._resolution.retry(event_id)

    async def skip_dead_letter(self, event_id: uuid.UUID) -> None:
        """Close a parked event's row without applying it; a projection paused at the event
        moves past it (and stays paused until resumed)."""
        await self._resolution.skip(event_id)

    # -- helpers --------------------------------------------------------------------------

    async def _transaction(self, work: Callable[[AsyncConnection[Any]], Awaitable[None]]) -> None:
        """``work`` in one transaction, with the checkpoint locked."""
        with translated():
            async with self._pool.connection() as conn, conn.transaction():
                await self.checkpoints.lock(conn, self.name)
                await work(conn)
