"""One projection's batches: the events after its checkpoint, their changes, one transaction
(``readmodels/transaction.py``) and the report of where the projection stands after it.

It also owns what the catch-up pipeline, the waiting loop and the dead-letter resolution share:
each event's changes, telling ``on_committed`` whose rows changed, and the report.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from acci.eventstore.errors import EventStoreValidationError
from acci.eventstore.records import Position, RecordedEvent
from acci.eventstore.store import EventStore
from acci.readmodels.checkpoints import Checkpoint, CheckpointStore
from acci.readmodels.dead_letters import DeadLetterStore
from acci.readmodels.lag import Lag, measure_lag
from acci.readmodels.projections import Projection
from acci.readmodels.reports import BatchReport, EventFailure, describe
from acci.readmodels.transaction import Batch, BatchTransaction, CheckpointMovedError, Parking
from acci.readmodels.versioned import allowed, versioned_tables

log = logging.getLogger(__name__)

OnCommitted = Callable[[set[str]], Awaitable[None]]
"""Called after each commit that changed rows, with the tenants whose rows changed."""


class Batches:
    """Runs one projection's batches, each exactly once, and reports where it stands."""

    def __init__(
        self,
        projection: Projection,
        store: EventStore,
        *,
        checkpoints: CheckpointStore,
        dead_letters: DeadLetterStore,
        lag_cap: int,
        on_committed: OnCommitted | None = None,
        checkpoint: str | None = None,
    ) -> None:
        self.projection = projection
        self.store = store
        self.checkpoints = checkpoints
        # The checkpoint row: the projection's name, or a rebuild's ("<name>@v<N>").
        self.name = checkpoint or projection.name
        self.transaction = BatchTransaction(
            self.name,
            store.pool,
            tables=frozenset(projection.tables),
            checkpoints=checkpoints,
            dead_letters=dead_letters,
            park_shredded=store.encryption.shredded_events == "park",
        )
        self._lag_cap = lag_cap
        self._on_committed = on_committed

    async def run(
        self, *, limit: int, parking: Parking, until: Position | None = None
    ) -> BatchReport:
        """Apply up to ``limit`` events after the checkpoint, with the new checkpoint.

        Stops before the first event that fails (its handler raised, or the database refused
        its changes) and reports it, or parks it if ``parking`` says so; applies no event past
        ``until``. Round trips: the
        checkpoint, the events, and two for the transaction; the lag is only measured when the
        batch did not reach the end (else it is 0 at the batch's snapshot).
        """
        checkpoint = await self.checkpoints.get(self.name)
        if checkpoint.paused:
            return await self.report(checkpoint, 0)
        try:
            events = await self.store.read_all(checkpoint.position, limit=limit)
        except EventStoreValidationError as e:
            # A stored event that cannot be read at all: nothing to park (no event to name),
            # so the projection keeps failing, visibly, until the event store is repaired.
            return await self.report(checkpoint, 0, failure=EventFailure(str(e)))
        if until is not None:  # a rebuild catching up to exactly the live version's position
            events = [e for e in events if e.position <= until]
        if not events:
            return await self.report(checkpoint, 0, reached_end=True)
        batch, failure = self.changes(events, checkpoint.version)
        parking = replace(parking, policy=parking.policy or self.projection.on_failure)
        try:
            applied, failure, after = await self.transaction.commit(
                checkpoint, batch, failure, parking=parking
            )
        except CheckpointMovedError:
            return await self.report(await self.checkpoints.get(self.name), 0)
        parked = None
        if failure is not None and parking.parks(failure):
            parked, failure = failure, None
            log.warning(
                "projection parked an event",
                extra={
                    "projection": self.name,
                    "event_id": str(parked.event_id),
                    "policy": parking.policy,
                    "error": parked.error,
                },
            )
        await self.notify(applied)
        return await self.report(
            after,
            len(applied),
            failure=failure,
            parked=parked,
            reached_end=len(events) < limit and failure is None and parked is None,
        )

    def changes(
        self, events: Sequence[RecordedEvent], version: int
    ) -> tuple[Batch, EventFailure | None]:
        """Each event's changes (to be applied to version ``version``'s tables), up to the first
        event whose handler fails or writes a table that is not its projection's."""
        batch: Batch = []
        handle = self.projection.handle_event
        tables = versioned_tables(self.projection, version)  # once per batch
        for event in events:
            if (damage := event.damage()) is not None:  # its sealed data was changed
                return batch, EventFailure(damage, event)
            if not event.readable:
                # A shredded tenant's event (eventstore/encryption.py): no handler can read it.
                # Passed over, or parked by the transaction (setting shredded_events).
                batch.append((event, []))
                continue
            try:
                changes = allowed(handle(event), tables)
            except Exception as e:  # any handler failure is this event's failure
                return batch, EventFailure(describe(e), event)
            batch.append((event, changes))
        return batch, None

    async def notify(self, applied: Batch) -> None:
        """Tell ``on_committed`` whose rows the committed ``applied`` changed (if any)."""
        tenants = {event.tenant_id for event, changes in applied if changes}
        if not tenants or self._on_committed is None:
            return
        try:
            await self._on_committed(tenants)
        except Exception as e:
            # The rows are committed; a failed callback (a cache that could not be invalidated)
            # must not make the batch run again.
            log.warning(
                "on_committed callback failed",
                extra={"projection": self.name, "error": describe(e)},
            )

    async def lag(self, position: Position) -> Lag:
        """How far ``position`` is behind the newest committed event."""
        return await measure_lag(self.store.pool, position, cap=self._lag_cap)

    async def report(
        self,
        checkpoint: Checkpoint,
        applied: int,
        *,
        failure: EventFailure | None = None,
        parked: EventFailure | None = None,
        reached_end: bool = False,
    ) -> BatchReport:
        """Where the projection stands at ``checkpoint``, after applying ``applied`` events."""
        # A batch that read fewer events than it asked for saw everything readable: no lag it
        # could apply, as of its read (run_batches measures the real lag before it reports).
        if reached_end:
            lag = Lag.none_at(checkpoint.position)
        else:
            lag = await self.lag(checkpoint.position)
        return BatchReport(
            projection=self.name,
            applied=applied,
            position=checkpoint.position,
            lag=lag,
            paused=checkpoint.paused,
            last_error=(failure.error if failure else checkpoint.last_error),
            failure=failure,
            parked=parked,
        )

    async def measured(self, report: BatchReport) -> BatchReport:
        """``report`` with its lag measured where a batch's "read to the end" stood in for it.

        Once per ``run_batches`` (not per batch): what it returns is what the status and the
        lag gauge show, and a stall (committed events behind an open event-writing transaction,
        which a read that reached the end cannot see) only shows when measured.
        """
        if report.lag.measured:
            return report
        return replace(report, lag=await self.lag(report.position))
