"""The PostgreSQL event store: append, read a stream, read everything in global order."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from acci.domain import errors as domain_errors
from acci.domain.registry import EventRegistry
from acci.domain.registry import registry as default_registry
from acci.eventstore import instruments, validation
from acci.eventstore.append import COMMAND_ID_TAKEN, Appender
from acci.eventstore.encryption import OFF, PayloadEncryption
from acci.eventstore.errors import (
    EventStoreValidationError,
    UnsupportedEventTypeError,
    translated,
)
from acci.eventstore.global_order import COLUMNS, HEAD, READ_ALL, READ_TENANT_IN
from acci.eventstore.records import (
    ANY,
    START,
    AppendResult,
    CommandRecord,
    NewEvent,
    Position,
    RecordedEvent,
    StreamAppend,
    with_envelope,
)
from acci.eventstore.tenant_scope import scoped

Params = Sequence[Any] | Mapping[str, Any]
Connection = AsyncConnection[Any]

_READ_STREAM: Final = (
    sql.SQL(
        "SELECT {columns} FROM event_store.events"
        " WHERE tenant_id = %(tenant_id)s AND aggregate_id = %(aggregate_id)s"
        " AND (%(aggregate_type)s::text IS NULL OR aggregate_type = %(aggregate_type)s::text)"
        " AND sequence_number >= %(from_version)s AND sequence_number <= %(to_version)s"
        " AND (%(until)s::timestamptz IS NULL OR created_at <= %(until)s::timestamptz)"
        " ORDER BY aggregate_type, sequence_number"
    )
    .format(columns=COLUMNS)
    .as_string(None)
)

# The events one command stored, in every stream it touched: they were all stored by the one
# transaction its row in event_store.commands names, which the primary key's
# (tenant_id, transaction_id) prefix finds (the tenant is a parameter: only its rows are read).
_COMMAND_EVENTS: Final = (
    sql.SQL(
        "SELECT {columns} FROM event_store.events"
        " WHERE tenant_id = %(tenant_id)s AND transaction_id = ("
        "SELECT transaction_id FROM event_store.commands"
        " WHERE command_id = %(command_id)s AND tenant_id = %(tenant_id)s)"
        " AND command_id = %(command_id)s"
        " ORDER BY global_position"
    )
    .format(columns=COLUMNS)
    .as_string(None)
)

_COMMAND_RECORD: Final = (
    "SELECT command_id, tenant_id, aggregate_type, aggregate_id, command_type, fingerprint,"
    " event_ids FROM event_store.commands WHERE command_id = %s"
)

_STREAM_VERSION: Final = (
    "SELECT coalesce(max(sequence_number), 0) FROM event_store.events"
    " WHERE tenant_id = %s AND aggregate_id = %s AND aggregate_type = %s"
)


class EventStore:
    """Appends events to streams and reads them back, upcast, per stream or in global order."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        registry: EventRegistry = default_registry,
        max_payload_bytes: int = 256 * 1024,
        max_events_per_append: int = 1_000,
        encryption: PayloadEncryption = OFF,
    ) -> None:
        """``encryption`` seals new events' data with their tenant's key (when on) and opens
        sealed data on every read (eventstore/encryption.py)."""
        self._pool = pool
        self._encryption = encryption
        self._registry = registry
        self._max_events = max_events_per_append
        self._appender = Appender(
            pool,
            registry,
            max_payload_bytes=max_payload_bytes,
            max_events=max_events_per_append,
            command_events=self.command_events,
            command_record=self.command_record,
        )

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool the store reads and writes through."""
        return self._pool

    @property
    def encryption(self) -> PayloadEncryption:
        """How this store seals and opens payloads (the snapshot store and loads share it)."""
        return self._encryption

    @property
    def registry(self) -> EventRegistry:
        """The event types this store writes and reads."""
        return self._registry

    # -- writing -------------------------------------------------------------------------

    async def append(
        self,
        tenant_id: str,
        aggregate_id: str,
        aggregate_type: str,
        events: Sequence[NewEvent],
        *,
        command_id: uuid.UUID,
        expected_version: int = ANY,
        metadata: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
    ) -> AppendResult:
        """Append one command's events to one stream, atomically and idempotently.

        ``expected_version`` is ``ANY``, ``NO_STREAM`` or the stream's current version. The
        same command appended again returns the first append's result and stores nothing; its
        id sent with another command (another tenant, stream or ``fingerprint``) is refused
        with ``CommandIdReusedError``.
        """
        append = StreamAppend(
            tenant_id,
            aggregate_id,
            aggregate_type,
            tuple(events),
            command_id,
            expected_version,
            fingerprint,
        )
        return (await self.append_many([append], metadata=metadata))[0]

    async def append_many(
        self, appends: Sequence[StreamAppend], *, metadata: Mapping[str, Any] | None = None
    ) -> list[AppendResult]:
        """Append to many streams in one transaction and one round trip: all or nothing.

        Commands of the batch that were appended before return their first result; the rest
        are stored together or not at all.
        """
        if not appends:
            return []
        keys = await self._encryption.keys_for_writing(
            validation.tenant_id(a.tenant_id) for a in appends
        )
        prepared = self._appender.prepare(appends, metadata, keys=keys)
        with instruments.APPEND_SECONDS.time():
            results = await self._appender.run(appends, prepared)
        instruments.appended(results)
        return results

    # -- reading -------------------------------------------------------------------------

    async def command_record(
        self, command_id: uuid.UUID, tenant_id: str | None = None
    ) -> CommandRecord | None:
        """What the store knows of a command that stored events (None: it stored none); with
        ``tenant_id``, read in that tenant (as acci_app, another tenant's command is not seen)."""
        if not isinstance(command_id, uuid.UUID):
            raise EventStoreValidationError(f"command id {command_id!r} is not a UUID")
        row = await self._fetchone(_COMMAND_RECORD, (command_id,), tenant_id=tenant_id)
        if row is None:
            return None
        command_id, tenant_id, aggregate_type, aggregate_id, command_type, fingerprint, ids = row
        record = (command_id, tenant_id, aggregate_type, aggregate_id, command_type, fingerprint)
        return CommandRecord(*record, tuple(ids))

    async def command_id_taken(self, command_id: uuid.UUID) -> bool:
        """Whether a command of any tenant stored events under this id (the database answers
        for every tenant without showing the command: acci_app sees only its own tenant's)."""
        row = await self._fetchone(COMMAND_ID_TAKEN, (command_id,))
        return bool(row and row[0])

    async def command_events(self, tenant_id: str, command_id: uuid.UUID) -> list[RecordedEvent]:
        """Every event an earlier append of this command stored in this tenant, in every stream
        it touched, in the order they were appended (none if it stored nothing)."""
        validation.tenant_id(tenant_id)
        if not isinstance(command_id, uuid.UUID):
            raise EventStoreValidationError(f"command id {command_id!r} is not a UUID")
        params = {"tenant_id": tenant_id, "command_id": command_id}
        return await self._fetch_events(_COMMAND_EVENTS, params, tenant_id=tenant_id)

    async def command_result(self, tenant_id: str, command_id: uuid.UUID) -> AppendResult | None:
        """What an earlier append of this command stored in the stream it was addressed to (its
        first), or None if it stored nothing."""
        events = await self.command_events(tenant_id, command_id)
        if not events:
            return None
        stream = (events[0].aggregate_id, events[0].aggregate_type)
        primary = [e for e in events if (e.aggregate_id, e.aggregate_type) == stream]
        return AppendResult.of_events(primary, duplicate=True)

    async def stream_version(self, tenant_id: str, aggregate_id: str, aggregate_type: str) -> int:
        """The stream's current version (0 if it has no events)."""
        validation.tenant_id(tenant_id)
        validation.aggregate_id(aggregate_id)
        validation.type_name(aggregate_type, "aggregate type")
        row = await self._fetchone(
            _STREAM_VERSION, (tenant_id, aggregate_id, aggregate_type), tenant_id=tenant_id
        )
        return int(row[0]) if row else 0

    async def read_stream(
        self,
        tenant_id: str,
        aggregate_id: str,
        *,
        aggregate_type: str | None = None,
        from_version: int = 1,
        to_version: int | None = None,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """A stream's events in order, optionally between two versions or up to a time.

        A stream is (tenant, aggregate type, aggregate id); without ``aggregate_type`` every
        stream of that id is read (each in order, one type after another).
        """
        validation.stream(tenant_id, aggregate_id, until=until)
        if aggregate_type is not None:
            validation.type_name(aggregate_type, "aggregate type")
        params = {
            "tenant_id": tenant_id,
            "aggregate_id": aggregate_id,
            "aggregate_type": aggregate_type,
            "from_version": max(from_version, 1),
            "to_version": validation.MAX_VERSION if to_version is None else to_version,
            "until": until,
        }
        return await self._fetch_events(_READ_STREAM, params, tenant_id=tenant_id)

    async def read_all(
        self,
        after: Position = START,
        *,
        limit: int = 1_000,
        tenant_id: str | None = None,
        event_types: Iterable[str] | None = None,
    ) -> list[RecordedEvent]:
        """Up to ``limit`` events after ``after`` in global order, without gaps.

        Continue from the last returned event's ``position``. Events of transactions that are
        still open are not returned yet, nor is anything after them. A shredded tenant's events
        come as ``UnreadableEvent`` (``readable`` False), in their places.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 100_000:
            raise EventStoreValidationError(f"limit must be 1..100000, got {limit}")
        params: dict[str, object] = {
            "tx": str(after.transaction_id),
            "gp": after.global_position,
            "limit": limit,
        }
        if tenant_id is not None:
            params["tenant_id"] = validation.tenant_id(tenant_id)
        types = None if event_types is None else validation.type_names(event_types)
        if types is not None:
            unknown = [t for t in types if not self._registry.is_known(t)]
            if unknown:
                raise UnsupportedEventTypeError(f"unknown event type(s) {unknown}")
            params["event_types"] = types
        query = READ_ALL[(tenant_id is not None, types is not None)]
        with instruments.READ_ALL_BATCH_SECONDS.time():
            return await self._fetch_events(query, params, tenant_id=tenant_id, mark_shredded=True)

    async def read_tenant_in(
        self,
        conn: AsyncConnection[Any],
        tenant_id: str,
        *,
        after: Position = START,
        until: Position,
        limit: int = 5_000,
    ) -> list[RecordedEvent]:
        """Up to ``limit`` of one tenant's events after ``after`` and up to ``until``, in the
        global order, read on ``conn`` (inside the caller's transaction, which may have written
        them: a restore refreshing the tenant's read models)."""
        params = {
            "tenant_id": validation.tenant_id(tenant_id),
            "tx": str(after.transaction_id),
            "gp": after.global_position,
            "to_tx": str(until.transaction_id),
            "to_gp": until.global_position,
            "limit": limit,
        }
        with translated():
            cur = conn.cursor(row_factory=_recorded_event)
            await cur.execute(READ_TENANT_IN, params)
            events = await cur.fetchall()
        await self._encryption.open_events(events, mark_shredded=True)
        return self._upcast(events)

    async def head(self, *, tenant_id: str | None = None) -> Position:
        """The position of the newest committed event (the start if none).

        Not capped by the gap-free horizon: while an open event-writing transaction holds
        ``read_all`` back, the head is ahead of what readers can reach (a stall shows as lag).
        """
        params = {} if tenant_id is None else {"tenant_id": validation.tenant_id(tenant_id)}
        row = await self._fetchone(
            HEAD[(tenant_id is not None, False)], params, tenant_id=tenant_id
        )
        return Position(int(row[0]), int(row[1])) if row else Position.start()

    async def readable_head(self, *, tenant_id: str | None = None) -> Position:
        """The position of the newest event ``read_all`` can reach now (the start if none)."""
        params = {} if tenant_id is None else {"tenant_id": validation.tenant_id(tenant_id)}
        row = await self._fetchone(HEAD[(tenant_id is not None, True)], params, tenant_id=tenant_id)
        return Position(int(row[0]), int(row[1])) if row else Position.start()

    def _connection(self, tenant_id: str | None) -> AbstractAsyncContextManager[Connection]:
        """A pooled connection; with a tenant, scoped to it (row-level security as acci_app)."""
        return self._pool.connection() if tenant_id is None else scoped(self._pool, tenant_id)

    async def _fetchone(
        self, query: str, params: Params, *, tenant_id: str | None = None
    ) -> tuple[Any, ...] | None:
        with translated():
            async with self._connection(tenant_id) as conn:
                cur = await conn.execute(query, params)
                return await cur.fetchone()

    async def _fetch_events(
        self,
        query: str,
        params: Mapping[str, object],
        *,
        tenant_id: str | None = None,
        mark_shredded: bool = False,
    ) -> list[RecordedEvent]:
        with translated():
            async with self._connection(tenant_id) as conn:
                cur = conn.cursor(row_factory=_recorded_event)
                await cur.execute(query, params)
                events = await cur.fetchall()
        await self._encryption.open_events(events, mark_shredded=mark_shredded)
        return self._upcast(events)

    def _upcast(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """The events at their types' current versions (most already are: left untouched)."""
        registry = self._registry
        current: dict[str, int] = {}
        for index, event in enumerate(events):
            try:
                version = current.get(event.event_type)
                if version is None:
                    version = current[event.event_type] = registry.current_version(event.event_type)
                if version != event.event_version:
                    if not event.readable:
                        continue  # a shredded tenant's: its data is gone, nothing to upcast
                    version, data = registry.upcast(
                        event.event_type, event.event_version, event.data
                    )
                    events[index] = event._replace(event_version=version, data=data)
            except domain_errors.CommandValidationError as e:
                if not event.readable:
                    continue  # a shredded tenant's: read as unreadable whatever its type
                where = f"stored event {event.event_id} in {event.tenant_id}/{event.aggregate_id}"
                if isinstance(e, domain_errors.UnknownEventTypeError):
                    raise UnsupportedEventTypeError(
                        f"{where} has unknown type {event.event_type!r}"
                        f" version {event.event_version}: {e}"
                    ) from e
                raise EventStoreValidationError(f"{where} cannot be read: {e}") from e
        return events


def _recorded_event(cursor: Any) -> Callable[[Sequence[Any]], RecordedEvent]:
    """psycopg row factory: rows in RecordedEvent's column order become RecordedEvents, their
    metadata with the envelope fields the command id implies."""
    return _event_of_row


def _event_of_row(row: Sequence[Any]) -> RecordedEvent:
    event = RecordedEvent._make(row)
    # The metadata dict was decoded for this row alone: completed in place, not copied.
    with_envelope(event.metadata, event.command_id)
    return event
