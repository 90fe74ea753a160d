"""The pipelined catch-up: a backlog applied batch after batch, each batch's transaction sent
while the one before it commits, events read once for every runner through the shared log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from acci.eventstore.errors import EventStoreValidationError
from acci.eventstore.records import RecordedEvent
from acci.readmodels.batch import Batches
from acci.readmodels.checkpoints import Checkpoint
from acci.readmodels.reports import BatchReport, EventFailure
from acci.readmodels.shared_log import LogCursor, SharedLog
from acci.readmodels.transaction import NO_PARKING, CheckpointMovedError, Committed, Turn


async def catch_up(
    batches: Batches,
    log: SharedLog,
    *,
    limit: int,
    budget: float | None,
    heartbeat: Callable[[], None] | None,
) -> BatchReport:
    """Run batches until nothing visible is left, or an event fails, or it is paused, or
    ``budget`` seconds have passed (then the report shows the lag left); ``heartbeat`` is
    called after every batch. The report counts every batch's events.

    Each batch is ``Batches.run``'s: up to ``limit`` events, their changes and the checkpoint
    in one transaction that locks the checkpoint only where the batch started. For a backlog
    they are pipelined: events come a page at a time from the process's ``SharedLog`` (read
    once for every runner catching up at the same time, the next page while this one is
    applied); a batch's transaction is sent while the one before it commits (on another
    connection, its checkpoint lock waits for that commit, and finds the checkpoint where
    that batch ends or applies nothing); and the lag is not measured after every batch
    (only at the end, as ``Batches.run`` does: if something failed or was paused).
    """
    loop = asyncio.get_running_loop()
    deadline = None if budget is None else loop.time() + budget
    progress = _Progress(deadline, heartbeat)
    checkpoint = await batches.checkpoints.get(batches.name)
    async with log.cursor(checkpoint.position) as cursor:
        while True:  # from the checkpoint: at the start, and after another runner moved it
            if checkpoint.paused:
                return await batches.report(checkpoint, progress.applied)
            try:
                return await _Pipeline(batches, cursor, limit, progress, checkpoint).run()
            except CheckpointMovedError:
                checkpoint = await batches.checkpoints.get(batches.name)
                cursor.restart(checkpoint.position)


@dataclass
class _Progress:
    """What a catch-up applied so far, its deadline (loop time) and its heartbeat."""

    deadline: float | None
    heartbeat: Callable[[], None] | None
    applied: int = 0

    def committed(self, applied: int) -> None:
        self.applied += applied
        if self.heartbeat is not None:
            self.heartbeat()

    def out_of_time(self) -> bool:
        return self.deadline is not None and asyncio.get_running_loop().time() >= self.deadline


class _Pipeline:
    """A catch-up from one checkpoint: one batch's transaction in flight while the one before
    it commits. Raises ``CheckpointMovedError`` if the checkpoint moved under a batch."""

    def __init__(
        self,
        batches: Batches,
        cursor: LogCursor,
        limit: int,
        progress: _Progress,
        checkpoint: Checkpoint,
    ) -> None:
        self._batches = batches
        self._cursor = cursor
        self._limit = limit
        self._progress = progress
        self._expected = checkpoint  # where the next batch's transaction expects the checkpoint
        self._after = checkpoint  # where the last batch that committed left it
        self._previous: asyncio.Task[Committed] | None = None  # committing
        self._current: asyncio.Task[Committed] | None = None  # sent this turn
        self._held: asyncio.Event | None = None  # set once the batch sent last holds the lock

    async def run(self) -> BatchReport:
        try:
            while True:
                out_of_time = self._progress.out_of_time()
                unreadable: EventStoreValidationError | None = None
                try:
                    events = [] if out_of_time else await self._cursor.next(self._limit)
                except EventStoreValidationError as e:
                    events, unreadable = [], e
                failure = self._send(events) if events else None
                if self._previous is not None:
                    previous, self._previous = self._previous, None
                    if (failed := (await self._landed(previous)).failure) is not None:
                        # The batch in flight finds the checkpoint short of where it expects
                        # it, and applies nothing.
                        return await self._report(failure=failed)
                if unreadable is not None:
                    return await self._report(failure=EventFailure(str(unreadable)))
                if self._current is None:
                    return await self._report(reached_end=not out_of_time)
                if failure is not None:  # its handler failed: the batch stops before it
                    current, self._current = self._current, None
                    return await self._report(failure=(await self._landed(current)).failure)
                self._previous, self._current = self._current, None
                self._expected = Checkpoint(
                    self._batches.name,
                    events[-1].position,
                    "running",
                    None,
                    None,
                    self._expected.version,
                )
        finally:
            for task in (self._previous, self._current):
                if task is not None:  # never left half-way: it commits or rolls back
                    with contextlib.suppress(Exception):
                        await task

    def _send(self, events: Sequence[RecordedEvent]) -> EventFailure | None:
        """Send the transaction of a batch of ``events``, to start once the batch before it
        holds the checkpoint lock; returns the failure of the event whose handler failed."""
        batch, failure = self._batches.changes(events, self._expected.version)
        turn = Turn(previous=self._held, held=asyncio.Event())
        commit = self._batches.transaction.commit(
            self._expected, batch, failure, parking=NO_PARKING, turn=turn
        )
        self._current = asyncio.create_task(commit)
        self._held = turn.held
        return failure

    async def _landed(self, task: asyncio.Task[Committed]) -> Committed:
        """A sent batch once committed, counted and its tenants told."""
        committed = await task
        await self._batches.notify(committed.applied)
        self._progress.committed(len(committed.applied))
        self._after = committed.checkpoint
        return committed

    async def _report(
        self, *, failure: EventFailure | None = None, reached_end: bool = False
    ) -> BatchReport:
        return await self._batches.report(
            self._after, self._progress.applied, failure=failure, reached_end=reached_end
        )
