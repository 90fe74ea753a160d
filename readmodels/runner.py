"""Runs one projection: a batch of events and its checkpoint, applied in one transaction.

Exactly-once effects come from the transaction, not from the caller: the runner reads the
checkpoint, reads the events after it, then, in one transaction, locks the checkpoint row only if
it is still where it was read, applies every change and moves the checkpoint. A crash anywhere
rolls all of it back; a retry, or a second runner racing this one, finds the checkpoint where the
first commit left it. Nothing is applied twice and, because events are read in the gap-free
global order (DESIGN §4), nothing is passed over.

Retrying a failing event is the caller's loop (the ``ProjectionWorkflow``): ``run_batch`` applies
the events before it, reports it, and on the last attempt (``park=`` its id) parks it in the
dead-letter table and pauses the projection or moves past it, as the policy says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection, AsyncCursor, sql

from eventstore.errors import EventStoreValidationError, translate
from eventstore.records import START, Position, RecordedEvent
from eventstore.store import EventStore
from readmodels.changes import Change, MissingRowError, apply_changes
from readmodels.checkpoints import Checkpoint, CheckpointStatus, CheckpointStore
from readmodels.dead_letters import DeadLetterStore, Resolution
from readmodels.errors import NotFoundError, ProjectionError
from readmodels.failure_policy import FailurePolicy
from readmodels.lag import LAG_CAP, Lag, measure_lag
from readmodels.projections import Projection
from readmodels.shared_log import LogCursor, SharedLog
from readmodels.wakeups import Appended

log = logging.getLogger(__name__)

OnCommitted = Callable[[set[str]], Awaitable[None]]
"""Called after each commit that changed rows, with the tenants whose rows changed."""

HEARTBEAT_SECONDS: Final = 5.0
"""How often ``run_batches`` calls its heartbeat while it waits for appends."""

CATCH_UP_BUDGET_SECONDS: Final = 10.0
"""How long ``run_batches`` works through a backlog before it returns to report progress."""

BACKLOG_BATCH: Final = 2_000
"""Events per transaction (at least) while ``run_batches`` works through a backlog: a commit,
its checkpoint move and each statement's planning are shared by more events, and a row that
many of them change is written once (measured in ``bench/readside_bench.py``). Only this
projection writes the rows the transaction holds, so holding them longer keeps nobody waiting
(queries read without locks)."""

_TRUNCATE: Final = "TRUNCATE read_models.{}"


@dataclass(frozen=True, slots=True)
class EventFailure:
    """An event the projection could not apply, and why (event None: it could not be read)."""

    error: str
    event: RecordedEvent | None = None

    @property
    def event_id(self) -> uuid.UUID | None:
        return self.event.event_id if self.event else None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one ``run_batch`` did and where the projection stands after it."""

    projection: str
    applied: int
    position: Position
    lag: Lag
    paused: bool
    last_error: str | None
    # The event that failed this time (not parked: the caller retries it).
    failure: EventFailure | None = None
    # The event parked this time (its policy decided whether the position moved past it).
    parked: EventFailure | None = None

    @property
    def caught_up(self) -> bool:
        """Nothing readable is left to apply (and nothing is failing): events held back by an
        open event-writing transaction (a stall) are lag, but cannot be applied yet."""
        return self.lag.readable == 0 and self.failure is None and not self.paused


Committed = tuple[list[tuple[RecordedEvent, list[Change]]], EventFailure | None, Checkpoint]
"""What ``_commit`` applied, the event that failed (if one did), and the checkpoint after."""


class _CheckpointMoved(Exception):
    """The checkpoint is no longer where this batch read it (another runner, or a pause)."""


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
    ) -> None:
        self.projection = projection
        self._store = store
        self._pool = store.pool
        self._on_committed = on_committed
        self.checkpoints = checkpoints or CheckpointStore(store.pool)
        self.dead_letters = dead_letters or DeadLetterStore(store.pool)
        self._lag_cap = lag_cap
        # Runners over one store read a backlog once between them (readmodels/shared_log.py).
        self._log = shared_log or SharedLog.of(store)

    @property
    def name(self) -> str:
        return self.projection.name

    # -- position -------------------------------------------------------------------------

    async def get_position(self) -> Position:
        """The position of the last event this projection applied (or passed over)."""
        return (await self.checkpoints.get(self.name)).position

    async def set_position(self, position: Position) -> None:
        """Move the checkpoint without touching any row (operators only: events between the
        old and the new position are then applied twice or never)."""
        await self.checkpoints.get(self.name)
        await self._transaction(
            lambda conn: self.checkpoints.move(conn, self.name, position), lock=True
        )

    async def reset(self) -> None:
        """Empty the projection's tables and go back to the start, in one transaction."""

        async def work(conn: AsyncConnection[Any]) -> None:
            for table in sorted(self.projection.tables):
                await conn.execute(sql.SQL(_TRUNCATE).format(sql.Identifier(table)))
            await self.checkpoints.move(conn, self.name, START)

        await self.checkpoints.get(self.name)
        await self._transaction(work, lock=True)

    async def lag(self, position: Position | None = None) -> Lag:
        """How far ``position`` (default: the checkpoint) is behind the newest committed event."""
        if position is None:
            position = await self.get_position()
        return await measure_lag(self._pool, position, cap=self._lag_cap)

    # -- running --------------------------------------------------------------------------

    async def run_batch(
        self,
        *,
        limit: int = 500,
        park: uuid.UUID | None = None,
        attempts: int = 1,
        on_failure: FailurePolicy | None = None,
    ) -> BatchReport:
        """Apply up to ``limit`` events after the checkpoint, with the new checkpoint.

        Stops before the first event that fails (its handler raised, or the database refused
        its changes) and reports it. If that event is ``park``, it is parked instead, counted
        as ``attempts`` attempts, and the projection pauses at it or moves past it
        (``on_failure``, default the projection's own policy).

        Round trips: the checkpoint, the events, and two for the transaction; the lag is only
        measured when the batch did not reach the end (else it is 0 at the batch's snapshot).
        """
        checkpoint = await self.checkpoints.get(self.name)
        if checkpoint.paused:
            return await self._report(checkpoint, 0)
        try:
            events = await self._store.read_all(checkpoint.position, limit=limit)
        except EventStoreValidationError as e:
            # A stored event that cannot be read at all: nothing to park (no event to name),
            # so the projection keeps failing, visibly, until the event store is repaired.
            return await self._report(checkpoint, 0, failure=EventFailure(str(e)))
        if not events:
            return await self._report(checkpoint, 0, reached_end=True)
        items, failure = self._changes(events)
        policy = on_failure or self.projection.on_failure
        try:
            applied, failure, after = await self._commit(
                checkpoint, items, failure, park=park, attempts=attempts, policy=policy
            )
        except _CheckpointMoved:
            return await self._report(await self.checkpoints.get(self.name), 0)
        parked = None
        if failure is not None and park is not None and failure.event_id == park:
            parked, failure = failure, None
            log.warning(
                "projection parked an event",
                extra={
                    "projection": self.name,
                    "event_id": str(parked.event_id),
                    "policy": policy,
                    "error": parked.error,
                },
            )
        await self._notify(applied)
        return await self._report(
            after,
            len(applied),
            failure=failure,
            parked=parked,
            reached_end=len(events) < limit and failure is None and parked is None,
        )

    async def run_batches(
        self,
        *,
        limit: int = 500,
        wait_seconds: float = 0.0,
        report_seconds: float = 0.0,
        gather_seconds: float = 0.0,
        appended: Appended | None = None,
        park: uuid.UUID | None = None,
        attempts: int = 1,
        on_failure: FailurePolicy | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> BatchReport:
        """``run_batch``; then, while caught up, wait for appends and run again.

        Returns the last batch's report, every batch's events counted: at once when a batch did
        not catch up (the caller records the progress), failed, parked or found the projection
        paused; ``report_seconds`` after it started if it applied anything (else it waits on);
        when no append came for ``wait_seconds``; or when ``appended`` is closed. Woken by an
        append, it lets ``gather_seconds`` pass before the next batch, so that a burst of
        commands costs one batch, not one each. ``heartbeat`` is called after every batch and at
        least every ``HEARTBEAT_SECONDS`` while waiting.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        applied = 0
        while True:
            since = appended.generation if appended is not None else 0
            report = await self.run_batch(
                limit=limit, park=park, attempts=attempts, on_failure=on_failure
            )
            applied += report.applied
            if heartbeat is not None:
                heartbeat()
            if backlog(report, park, attempts):
                # A backlog (a new or reset projection, a worker back after an outage): the
                # pipelined catch-up, for a while, then back to the caller with the progress.
                report = await self.catch_up(
                    limit=max(limit, BACKLOG_BATCH),
                    budget=CATCH_UP_BUDGET_SECONDS,
                    heartbeat=heartbeat,
                )
                return await self._measured(replace(report, applied=applied + report.applied))
            park = None
            if not report.caught_up or report.parked is not None:
                return await self._measured(replace(report, applied=applied))
            # Once something was applied, report it within report_seconds.
            deadline = start + (min(report_seconds, wait_seconds) if applied else wait_seconds)
            if not await self._wait(appended, since, deadline, heartbeat):
                return await self._measured(replace(report, applied=applied))
            if gather_seconds > 0:
                await asyncio.sleep(gather_seconds)

    async def _measured(self, report: BatchReport) -> BatchReport:
        """``report`` with its lag measured where a batch's "read to the end" stood in for it.

        Once per ``run_batches`` (not per batch): what it returns is what the status and the
        lag gauge show, and a stall (committed events behind an open event-writing transaction,
        which a read that reached the end cannot see) only shows when measured.
        """
        if report.lag.measured:
            return report
        return replace(report, lag=await self.lag(report.position))

    @staticmethod
    async def _wait(
        appended: Appended | None,
        since: int,
        deadline: float,
        heartbeat: Callable[[], None] | None,
    ) -> bool:
        """Whether an append came after ``since`` before ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        while (remaining := deadline - loop.time()) > 0:
            step = min(remaining, HEARTBEAT_SECONDS)
            if appended is None:
                await asyncio.sleep(step)
            elif await appended.wait(since, step):
                return True
            elif appended.closed:
                return False
            if heartbeat is not None:
                heartbeat()
        return False

    async def catch_up(
        self,
        *,
        limit: int = 500,
        budget: float | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> BatchReport:
        """Run batches until nothing visible is left, or an event fails, or it is paused, or
        ``budget`` seconds have passed (then the report shows the lag left); ``heartbeat`` is
        called after every batch. The report counts every batch's events.

        Each batch is ``run_batch``'s: up to ``limit`` events, their changes and the checkpoint
        in one transaction that locks the checkpoint only where the batch started. For a backlog
        they are pipelined: events come a page at a time from the process's ``SharedLog`` (read
        once for every runner catching up at the same time, the next page while this one is
        applied); a batch's transaction is sent while the one before it commits (on another
        connection, its checkpoint lock waits for that commit, and finds the checkpoint where
        that batch ends or applies nothing); and the lag is not measured after every batch
        (only at the end, as ``run_batch`` does: if something failed or was paused).
        """
        loop = asyncio.get_running_loop()
        deadline = None if budget is None else loop.time() + budget
        progress = _Progress(deadline, heartbeat)
        checkpoint = await self.checkpoints.get(self.name)
        async with self._log.cursor(checkpoint.position) as cursor:
            while True:  # from the checkpoint: at the start, and after another runner moved it
                if checkpoint.paused:
                    return await self._report(checkpoint, progress.applied)
                report = await self._catch_up_from(checkpoint, cursor, limit, progress)
                if report is not None:
                    return report
                checkpoint = await self.checkpoints.get(self.name)
                cursor.restart(checkpoint.position)

    async def _catch_up_from(
        self, checkpoint: Checkpoint, cursor: LogCursor, limit: int, progress: _Progress
    ) -> BatchReport | None:
        """``catch_up`` from ``checkpoint``; None if the checkpoint moved under a batch."""
        policy = self.projection.on_failure
        last: tuple[list[tuple[RecordedEvent, list[Change]]], Checkpoint] = ([], checkpoint)
        expected = checkpoint  # where the next batch's transaction expects the checkpoint
        previous: asyncio.Task[Committed] | None = None
        current: asyncio.Task[Committed] | None = None
        held: asyncio.Event | None = None  # set once the batch sent last holds the lock
        try:
            while True:
                unreadable: EventStoreValidationError | None = None
                out_of_time = progress.out_of_time()
                try:
                    events = [] if out_of_time else await cursor.next(limit)
                except EventStoreValidationError as e:
                    events, unreadable = [], e
                failure = None
                if events:
                    items, failure = self._changes(events)
                    turn = _Turn(previous=held, held=asyncio.Event())
                    commit = self._commit(
                        expected, items, failure, park=None, attempts=1, policy=policy, turn=turn
                    )
                    current = asyncio.create_task(commit)
                    held = turn.held
                if previous is not None:
                    try:
                        applied, failed, after = await previous
                    except _CheckpointMoved:
                        return None
                    finally:
                        previous = None
                    await self._notify(applied)
                    progress.committed(len(applied))
                    last = (applied, after)
                    if failed is not None:
                        # The batch in flight finds the checkpoint short of where it expects
                        # it, and applies nothing.
                        return await self._report(after, progress.applied, failure=failed)
                if unreadable is not None:
                    failure = EventFailure(str(unreadable))
                    return await self._report(last[1], progress.applied, failure=failure)
                if current is None:
                    return await self._report(
                        last[1], progress.applied, reached_end=not out_of_time
                    )
                if failure is not None:  # its handler failed: the batch stops before it
                    try:
                        applied, failed, after = await current
                    except _CheckpointMoved:
                        return None
                    finally:
                        current = None
                    await self._notify(applied)
                    progress.committed(len(applied))
                    return await self._report(after, progress.applied, failure=failed)
                previous, current = current, None
                expected = Checkpoint(self.name, events[-1].position, "running", None, None)
        finally:
            for task in (previous, current):
                if task is not None:  # never left half-way: it commits or rolls back
                    with contextlib.suppress(Exception):
                        await task

    def _changes(
        self, events: Sequence[RecordedEvent]
    ) -> tuple[list[tuple[RecordedEvent, list[Change]]], EventFailure | None]:
        """Each event's changes, up to the first event whose handler fails."""
        items: list[tuple[RecordedEvent, list[Change]]] = []
        handle, tables = self.projection.handle_event, self.projection.tables  # once per batch
        for event in events:
            try:
                changes = handle(event)
                for change in changes:
                    if change.table not in tables:
                        raise ProjectionError(
                            f"projection {self.name} may not write read_models.{change.table}"
                        )
            except Exception as e:  # any handler failure is this event's failure
                return items, EventFailure(_describe(e), event)
            items.append((event, changes))
        return items, None

    async def _commit(
        self,
        checkpoint: Checkpoint,
        items: list[tuple[RecordedEvent, list[Change]]],
        failure: EventFailure | None,
        *,
        park: uuid.UUID | None,
        attempts: int,
        policy: FailurePolicy,
        turn: _Turn | None = None,
    ) -> tuple[list[tuple[RecordedEvent, list[Change]]], EventFailure | None, Checkpoint]:
        """Apply ``items`` and move the checkpoint past them, in one transaction.

        The fast path is pipelined: the checkpoint lock and every change in one round trip, the
        checkpoint move and the commit in a second. If the database refuses a change, the
        transaction is rolled back and replayed event by event, each in a savepoint, to find the
        event whose changes were refused: the events before it are committed, it is reported.
        With a ``turn`` (a pipelined catch-up), it starts once the batch before it holds the
        checkpoint lock (or has ended).
        """
        if turn is None:
            return await self._transact(checkpoint, items, failure, park, attempts, policy, None)
        try:
            if turn.previous is not None:
                await turn.previous.wait()
            return await self._transact(checkpoint, items, failure, park, attempts, policy, turn)
        finally:
            turn.held.set()

    async def _transact(
        self,
        checkpoint: Checkpoint,
        items: list[tuple[RecordedEvent, list[Change]]],
        failure: EventFailure | None,
        park: uuid.UUID | None,
        attempts: int,
        policy: FailurePolicy,
        turn: _Turn | None,
    ) -> tuple[list[tuple[RecordedEvent, list[Change]]], EventFailure | None, Checkpoint]:
        async with self._pool.connection() as conn:
            try:
                async with conn.pipeline(), conn.transaction():
                    lock = await self.checkpoints.start_lock_at(conn, self.name, checkpoint)
                    await apply_changes(conn, [c for _, changes in items for c in changes])
                    await self._locked(lock, checkpoint, turn)
                    after = await self._finish(
                        conn, checkpoint, items, failure, park, attempts, policy
                    )
                return items, failure, after
            except psycopg.Error as e:
                if _is_outage(e):
                    raise translate(e) from e
            except MissingRowError:
                pass
            try:
                async with conn.transaction():
                    await self._locked(
                        await self.checkpoints.start_lock_at(conn, self.name, checkpoint),
                        checkpoint,
                        turn,
                    )
                    good: list[tuple[RecordedEvent, list[Change]]] = []
                    for event, changes in items:
                        try:
                            async with conn.transaction():  # a savepoint
                                await apply_changes(conn, changes)
                        except (psycopg.Error, MissingRowError) as e:
                            if isinstance(e, psycopg.Error) and _is_outage(e):
                                raise
                            failure = EventFailure(_describe(e), event)
                            break
                        good.append((event, changes))
                    after = await self._finish(
                        conn, checkpoint, good, failure, park, attempts, policy
                    )
                return good, failure, after
            except psycopg.Error as e:
                raise translate(e) from e

    async def _locked(
        self, lock: AsyncCursor[Any], checkpoint: Checkpoint, turn: _Turn | None = None
    ) -> None:
        """Go on only if the checkpoint was still where this batch read it, and running."""
        locked = await CheckpointStore.locked(lock, checkpoint)
        if locked is None or locked.paused:
            raise _CheckpointMoved
        if turn is not None:
            turn.held.set()

    async def _finish(
        self,
        conn: AsyncConnection[Any],
        checkpoint: Checkpoint,
        applied: list[tuple[RecordedEvent, list[Change]]],
        failure: EventFailure | None,
        park: uuid.UUID | None,
        attempts: int,
        policy: FailurePolicy,
    ) -> Checkpoint:
        """Move the checkpoint past ``applied``; park the failed event if it is ``park``.

        Returns the checkpoint as it will be once committed.
        """
        position = applied[-1][0].position if applied else checkpoint.position
        error = failure.error if failure else None
        status: CheckpointStatus = "running"
        if failure is not None and failure.event is not None and failure.event_id == park:
            event = failure.event
            await self.dead_letters.park(
                conn, self.name, event, error=failure.error, attempts=attempts
            )
            if policy == "skip":
                position, error = event.position, None
            else:
                status = "paused"
                error = f"parked event {event.event_id} ({event.event_type}): {failure.error}"
                await self.checkpoints.set_status_locked(conn, self.name, status, last_error=error)
        await self.checkpoints.move(conn, self.name, position, last_error=error)
        return Checkpoint(self.name, position, status, error, checkpoint.updated_at)

    # -- dead letters ---------------------------------------------------------------------

    async def retry_dead_letter(self, event_id: uuid.UUID) -> int:
        """Apply a parked event once more and close its row, in one transaction.

        Returns how many row changes it applied. A projection paused at the event moves past it
        (and stays paused until resumed). Fails with ``ProjectionError`` if the event fails
        again (its row stays open, its attempts counted), ``NotFoundError`` if it was never
        parked.
        """
        try:
            return await self._resolve(event_id, "retried")
        except _RetryFailedError as e:
            await self.dead_letters.failed_again(self.name, event_id, str(e))
            raise

    async def skip_dead_letter(self, event_id: uuid.UUID) -> None:
        """Close a parked event's row without applying it; a projection paused at the event
        moves past it (and stays paused until resumed)."""
        await self._resolve(event_id, "skipped")

    async def _resolve(self, event_id: uuid.UUID, resolution: Resolution) -> int:
        tenants: set[str] = set()
        count = 0
        try:
            async with self._pool.connection() as conn, conn.transaction():
                letter = await self.dead_letters.lock(conn, self.name, event_id)
                if letter is None:
                    raise _NotParkedError(
                        f"event {event_id} is not parked for projection {self.name}"
                    )
                if not letter.open:
                    raise _AlreadyResolvedError(
                        f"parked event {event_id} of projection {self.name} was already"
                        f" {letter.resolution} at {letter.resolved_at}"
                    )
                checkpoint = await self.checkpoints.lock(conn, self.name)
                event = await self._parked_event(letter.tenant_id, letter.position, event_id)
                if checkpoint.position < event.position:
                    # Paused at it: only the next event may be passed, never a gap.
                    following = await self._store.read_all(checkpoint.position, limit=1)
                    if [e.event_id for e in following] != [event_id]:
                        raise ProjectionError(
                            f"projection {self.name} is at {checkpoint.position}, before other"
                            f" events; it has not reached parked event {event_id} yet"
                        )
                    await self.checkpoints.move(conn, self.name, event.position)
                if resolution == "retried":
                    try:
                        changes = self.projection.handle_event(event)
                        await apply_changes(conn, changes)
                    except Exception as e:
                        if isinstance(e, psycopg.Error) and _is_outage(e):
                            raise
                        raise _RetryFailedError(
                            f"parked event {event_id} failed again in projection {self.name}:"
                            f" {_describe(e)}"
                        ) from e
                    count = len(changes)
                    if changes:
                        tenants.add(event.tenant_id)
                await self.dead_letters.resolve(conn, self.name, event_id, resolution)
        except psycopg.Error as e:
            raise translate(e) from e
        if tenants and self._on_committed is not None:
            await self._call_on_committed(tenants)
        log.info(
            "dead letter resolved",
            extra={"projection": self.name, "event_id": str(event_id), "resolution": resolution},
        )
        return count

    async def _parked_event(
        self, tenant_id: str, position: Position, event_id: uuid.UUID
    ) -> RecordedEvent:
        # The event is the only one at its position: read from just before it, upcast.
        before = Position(position.transaction_id, position.global_position - 1)
        found = await self._store.read_all(before, limit=1, tenant_id=tenant_id)
        if not found or found[0].event_id != event_id:
            raise ProjectionError(f"parked event {event_id} is not in the event store")
        return found[0]

    # -- helpers --------------------------------------------------------------------------

    async def _transaction(
        self, work: Callable[[AsyncConnection[Any]], Awaitable[None]], *, lock: bool
    ) -> None:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                if lock:
                    await self.checkpoints.lock(conn, self.name)
                await work(conn)
        except psycopg.Error as e:
            raise translate(e) from e

    async def _notify(self, applied: list[tuple[RecordedEvent, list[Change]]]) -> None:
        tenants = {event.tenant_id for event, changes in applied if changes}
        if tenants and self._on_committed is not None:
            await self._call_on_committed(tenants)

    async def _call_on_committed(self, tenants: set[str]) -> None:
        assert self._on_committed is not None
        try:
            await self._on_committed(tenants)
        except Exception as e:
            # The rows are committed; a failed callback (a cache that could not be invalidated)
            # must not make the batch run again.
            log.warning(
                "on_committed callback failed",
                extra={"projection": self.name, "error": _describe(e)},
            )

    async def _report(
        self,
        checkpoint: Checkpoint,
        applied: int,
        *,
        failure: EventFailure | None = None,
        parked: EventFailure | None = None,
        reached_end: bool = False,
    ) -> BatchReport:
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


class _NotParkedError(NotFoundError, ProjectionError):
    """The event was never parked for this projection."""


class _AlreadyResolvedError(ProjectionError):
    """The parked event was retried or skipped before."""


class _RetryFailedError(ProjectionError):
    """The parked event failed again."""


@dataclass(frozen=True, slots=True)
class _Turn:
    """A pipelined batch's place in line: it starts once ``previous`` is set (the batch before
    it holds the checkpoint lock, or ended), and sets ``held`` once it holds the lock itself.

    Without it, a batch could reach the database first, find the checkpoint where the batch
    before it starts rather than ends, and apply nothing (the catch-up then starts over).
    """

    previous: asyncio.Event | None
    held: asyncio.Event


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


def _is_outage(e: psycopg.Error) -> bool:
    """Whether the database (not the event's changes) failed: the batch is retried as a whole."""
    return isinstance(e, psycopg.OperationalError | psycopg.InterfaceError | psycopg.InternalError)


def _describe(e: BaseException) -> str:
    text = str(e).strip() or "(no message)"
    return f"{type(e).__name__}: {text}"


def backlog(report: BatchReport, park: uuid.UUID | None, attempts: int) -> bool:
    """Whether a first, ordinary batch left events behind without failing or pausing."""
    return (
        park is None
        and attempts == 1
        and not report.caught_up
        and report.failure is None
        and report.parked is None
        and not report.paused
    )
