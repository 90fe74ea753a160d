"""Loading aggregates (snapshot + later events) and saving what they decided."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from acci.domain.aggregate import EventSourced
from acci.domain.errors import CommandValidationError, UnknownEventTypeError
from acci.domain.events import DomainEvent
from acci.eventstore.errors import EventStoreValidationError, UnsupportedEventTypeError
from acci.eventstore.loading import StoredEvent, read_tail
from acci.eventstore.records import AppendResult, NewEvent, StreamAppend
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore

AggregateT = TypeVar("AggregateT", bound=EventSourced[Any, Any])

log = logging.getLogger(__name__)


class AggregateRepository:
    """Folds aggregates from the event store, starting at their newest usable snapshot.

    With ``snapshot_after`` (events), a current load that folded at least that many events past
    its newest snapshot writes a snapshot of what it loaded, in the background: the load (and
    the command waiting for it) does not wait for the write, and the next load of the stream
    starts there, so a command's load stays bounded however long its streams grow. A failed
    write is logged and left to the next long load. 0 turns it off.
    """

    def __init__(
        self, store: EventStore, snapshots: SnapshotStore, *, snapshot_after: int = 0
    ) -> None:
        self._store = store
        self._snapshots = snapshots
        self._snapshot_after = snapshot_after
        self._writing: set[asyncio.Task[None]] = set()

    async def load(
        self,
        cls: type[AggregateT],
        tenant_id: str,
        aggregate_id: str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        use_snapshot: bool = True,
    ) -> AggregateT:
        """The aggregate now, at a stream version, or as of a time (version 0 if new).

        Every stored event is upcast and decoded on the way; one the registry cannot read
        raises ``UnknownEventTypeError`` (an unknown type or version) or
        ``EventStoreValidationError`` (data its class refuses), naming the stream and event.
        """
        # A snapshot is keyed by version, not time, so a load as of a time folds from the start.
        snapshot_schema = cls.state_schema_version if use_snapshot and as_of is None else None
        tail = await read_tail(
            self._store.pool,
            tenant_id,
            aggregate_id,
            cls.aggregate_type,
            schema_version=snapshot_schema,
            to_version=version,
            until=as_of,
            encryption=self._store.encryption,
        )
        state = None if tail.snapshot_state is None else cls.state_from_json(tail.snapshot_state)
        where = f"{tenant_id}/{cls.aggregate_type}/{aggregate_id}"
        aggregate = cls.from_events(
            aggregate_id,
            tenant_id,
            self._decoded(tail.events(), where, after=tail.snapshot_version),
            state=state,
            version=tail.snapshot_version,
        )
        folded = aggregate.version - tail.snapshot_version
        current = version is None and as_of is None and snapshot_schema is not None
        if current and self._snapshot_after and folded >= self._snapshot_after:
            self._snapshot_in_background(aggregate)
        return aggregate

    def _snapshot_in_background(self, aggregate: EventSourced[Any, Any]) -> None:
        # The state as loaded, taken now: the caller goes on to change the aggregate.
        state, version = aggregate.state_to_json(), aggregate.version
        task = asyncio.get_running_loop().create_task(
            self._write_snapshot(aggregate, state, version)
        )
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write_snapshot(
        self, aggregate: EventSourced[Any, Any], state: dict[str, Any], version: int
    ) -> None:
        try:
            await self._snapshots.save(
                aggregate.tenant_id,
                aggregate.aggregate_id,
                aggregate.aggregate_type,
                version=version,
                schema_version=aggregate.state_schema_version,
                state=state,
            )
        except Exception as e:  # the load succeeded; a missing snapshot only costs time
            log.warning(
                "snapshot after a long load failed",
                extra={
                    "tenant_id": aggregate.tenant_id,
                    "aggregate_id": aggregate.aggregate_id,
                    "aggregate_type": aggregate.aggregate_type,
                    "version": version,
                    "error": f"{type(e).__name__}: {e}",
                },
            )
            return
        log.info(
            "snapshot written after a long load",
            extra={
                "tenant_id": aggregate.tenant_id,
                "aggregate_id": aggregate.aggregate_id,
                "aggregate_type": aggregate.aggregate_type,
                "version": version,
            },
        )

    async def drain(self) -> None:
        """Wait for the snapshots being written in the background (at shutdown, in tests)."""
        while self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)

    def _decoded(
        self, events: Iterator[StoredEvent], where: str, *, after: int
    ) -> Iterator[DomainEvent]:
        """Each stored event upcast and decoded as the fold reaches it, each checked to follow
        the one before it (the first: ``after``, the snapshot's version) in the stream.

        A generator, so a long stream is folded while it is decoded: no list of every decoded
        event is built first and held beside the rows (issue 9 measured folding while decoding
        19 % faster on a 100,000-event stream).
        """
        decode = self._store.registry.decode_json
        expected = after + 1
        for sequence_number, event_type, event_version, data, _ in events:
            if sequence_number != expected:
                raise EventStoreValidationError(
                    f"{where}: read stored event {sequence_number} where {expected} was due"
                    " (the stream is out of order or has a gap; run `acci verify`)"
                )
            expected += 1
            try:
                event = decode(event_type, event_version, data)
            except UnknownEventTypeError as e:
                raise UnsupportedEventTypeError(
                    f"{where}: stored event {sequence_number}: {e}"
                ) from e
            except CommandValidationError as e:
                raise EventStoreValidationError(
                    f"{where}: stored event {sequence_number} ({event_type} version"
                    f" {event_version}) cannot be read: {e}"
                ) from e
            yield event

    async def save(
        self,
        aggregate: EventSourced[Any, Any],
        *,
        command_id: uuid.UUID,
        metadata: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> AppendResult | None:
        """Append the aggregate's uncommitted events, expecting the version it was loaded at."""
        results = await self.save_all(
            [aggregate], command_id=command_id, metadata=metadata, fingerprint=fingerprint
        )
        return results[0] if results else None

    async def save_all(
        self,
        aggregates: Sequence[EventSourced[Any, Any]],
        *,
        command_id: uuid.UUID,
        metadata: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> list[AppendResult]:
        """Append what one command decided for several aggregates in one transaction, each at
        the version it was loaded at; the first is the one the command was addressed to.

        Aggregates with nothing uncommitted are left out (none at all: an empty list).
        """
        encode = self._store.registry.encode
        appends = []
        for aggregate in aggregates:
            if not aggregate.uncommitted_events:
                continue
            events = []
            for event in aggregate.uncommitted_events:
                event_type, event_version, data = encode(event)
                events.append(NewEvent(event_type, event_version, data))
            appends.append(
                StreamAppend(
                    aggregate.tenant_id,
                    aggregate.aggregate_id,
                    aggregate.aggregate_type,
                    tuple(events),
                    command_id,
                    aggregate.committed_version,
                    fingerprint,
                )
            )
        if not appends:
            return []
        results = await self._store.append_many(appends, metadata=metadata)
        for aggregate in aggregates:
            aggregate.clear_uncommitted_events()
        return results

    async def snapshot(self, aggregate: EventSourced[Any, Any]) -> bool:
        """Save the aggregate's current state as a snapshot (idempotent)."""
        if aggregate.version < 1:
            raise EventStoreValidationError(f"{aggregate.aggregate_id!r} has no events to snapshot")
        return await self._snapshots.save(
            aggregate.tenant_id,
            aggregate.aggregate_id,
            aggregate.aggregate_type,
            version=aggregate.version,
            schema_version=aggregate.state_schema_version,
            state=aggregate.state_to_json(),
        )
