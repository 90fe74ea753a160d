"""The PostgreSQL event store: append, read a stream, read everything in global order."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, LiteralString

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from domain import errors as domain_errors
from domain.registry import EventRegistry
from domain.registry import registry as default_registry
from eventstore import validation
from eventstore.append import Appender
from eventstore.errors import (
    EventStoreValidationError,
    UnknownEventTypeError,
    translate,
)
from eventstore.partitions import TenantPartitions
from eventstore.records import (
    ANY,
    START,
    AppendResult,
    NewEvent,
    Position,
    RecordedEvent,
    StreamAppend,
    event_id_for,
)

_COLUMNS: Final = sql.SQL(", ").join(map(sql.Identifier, RecordedEvent._fields))

_READ_STREAM: Final = (
    sql.SQL(
        "SELECT {columns} FROM event_store.events"
        " WHERE tenant_id = %(tenant_id)s AND aggregate_id = %(aggregate_id)s"
        " AND sequence_number >= %(from_version)s AND sequence_number <= %(to_version)s"
        " AND (%(until)s::timestamptz IS NULL OR created_at <= %(until)s::timestamptz)"
        " ORDER BY sequence_number"
    )
    .format(columns=_COLUMNS)
    .as_string(None)
)

# The events one command stored: found by its first event id, then by its contiguous range.
_COMMAND_EVENTS: Final = (
    sql.SQL(
        "SELECT {columns} FROM event_store.events f JOIN event_store.events e"
        " ON e.tenant_id = f.tenant_id AND e.aggregate_id = f.aggregate_id"
        " AND e.sequence_number >= f.sequence_number"
        " AND e.sequence_number < f.sequence_number + %(max_events)s"
        " AND e.command_id = f.command_id"
        " WHERE f.tenant_id = %(tenant_id)s AND f.event_id = %(first_event_id)s"
        " ORDER BY e.sequence_number"
    )
    .format(columns=sql.SQL(", ").join(sql.Identifier("e", c) for c in RecordedEvent._fields))
    .as_string(None)
)

_STREAM_VERSION: Final = (
    "SELECT coalesce(max(sequence_number), 0) FROM event_store.events"
    " WHERE tenant_id = %s AND aggregate_id = %s"
)

# Gap-free global order (DESIGN §4): only rows of transactions older than every transaction
# still open that could have written them are read, in (transaction_id, global_position) order.
# An open transaction holds the reader back until it commits or aborts, so a late commit is
# delivered late, never skipped, and no lock serialises the writers.
#
# The horizon is the oldest transaction open in the statement's snapshot, leaving out those
# seen running in *another database* (a session never changes database, so they cannot have
# written these rows): a long write transaction elsewhere on the server does not stall the
# readers. Anything not positively seen elsewhere counts (one that ended between the snapshot
# and the look at pg_stat_activity, a prepared transaction, a subtransaction), so the horizon
# can only be lower than it needs to be, never higher. backend_xid is a 32-bit xid: open ones
# are within 2^31 of each other, so their low 32 bits tell them apart.
HORIZON: Final = (
    "coalesce((SELECT min(open.xid) FROM pg_snapshot_xip(pg_current_snapshot()) AS open(xid)"
    " WHERE NOT EXISTS (SELECT FROM pg_stat_activity AS a"
    " WHERE a.datname <> current_database()"
    " AND a.backend_xid::text::bigint = (open.xid::text::bigint & 4294967295))),"
    " pg_snapshot_xmax(pg_current_snapshot()))"
)
_VISIBLE: Final = "transaction_id < " + HORIZON


def _read_all_query(*, by_tenant: bool, by_type: bool) -> str:
    where: list[LiteralString] = [
        "(transaction_id, global_position) > (%(tx)s::text::xid8, %(gp)s)",
        _VISIBLE,
    ]
    if by_tenant:
        where.append("tenant_id = %(tenant_id)s")
    if by_type:
        where.append("event_type = ANY(%(event_types)s::text[])")
    return (
        sql.SQL(
            "SELECT {columns} FROM event_store.events WHERE {where}"
            " ORDER BY transaction_id, global_position LIMIT %(limit)s"
        )
        .format(
            columns=_COLUMNS,
            where=sql.SQL(" AND ").join(sql.SQL(w) for w in where),
        )
        .as_string(None)
    )


def _head_query(*, by_tenant: bool) -> str:
    where: list[LiteralString] = [_VISIBLE]
    if by_tenant:
        where.append("tenant_id = %(tenant_id)s")
    return (
        sql.SQL(
            "SELECT transaction_id, global_position FROM event_store.events WHERE {where}"
            " ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
        )
        .format(where=sql.SQL(" AND ").join(sql.SQL(w) for w in where))
        .as_string(None)
    )


_READ_ALL = {
    (t, e): _read_all_query(by_tenant=t, by_type=e) for t in (False, True) for e in (False, True)
}
_HEAD = {t: _head_query(by_tenant=t) for t in (False, True)}


class EventStore:
    """Appends events to streams and reads them back, upcast, per stream or in global order."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        registry: EventRegistry = default_registry,
        max_payload_bytes: int = 256 * 1024,
        max_events_per_append: int = 1_000,
        partitions: TenantPartitions | None = None,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._max_events = max_events_per_append
        self.partitions = partitions or TenantPartitions(pool)
        self._appender = Appender(
            pool,
            registry,
            max_payload_bytes=max_payload_bytes,
            max_events=max_events_per_append,
            command_events=self.command_events,
        )

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool the store reads and writes through."""
        return self._pool

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
    ) -> AppendResult:
        """Append one command's events to one stream, atomically and idempotently.

        ``expected_version`` is ``ANY``, ``NO_STREAM`` or the stream's current version. The
        same command appended again returns the first append's result and stores nothing.
        """
        append = StreamAppend(
            tenant_id, aggregate_id, aggregate_type, tuple(events), command_id, expected_version
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
        params = [self._appender.params(a, metadata) for a in appends]
        partitions = [await self.partitions.ensure(a.tenant_id) for a in appends]
        return await self._appender.run(appends, params, partitions)

    # -- reading -------------------------------------------------------------------------

    async def command_events(self, tenant_id: str, command_id: uuid.UUID) -> list[RecordedEvent]:
        """The events an earlier append of this command stored (none if it stored nothing)."""
        validation.tenant_id(tenant_id)
        params = {
            "tenant_id": tenant_id,
            "first_event_id": event_id_for(command_id, 0),
            "max_events": self._max_events,
        }
        return await self._fetch_events(_COMMAND_EVENTS, params)

    async def command_result(self, tenant_id: str, command_id: uuid.UUID) -> AppendResult | None:
        """What an earlier append of this command stored, or None if it stored nothing."""
        events = await self.command_events(tenant_id, command_id)
        return AppendResult.of_events(events, duplicate=True) if events else None

    async def stream_version(self, tenant_id: str, aggregate_id: str) -> int:
        """The stream's current version (0 if it has no events)."""
        validation.tenant_id(tenant_id)
        validation.aggregate_id(aggregate_id)
        row = await self._fetchone(_STREAM_VERSION, (tenant_id, aggregate_id))
        return int(row[0]) if row else 0

    async def read_stream(
        self,
        tenant_id: str,
        aggregate_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """A stream's events in order, optionally between two versions or up to a time."""
        validation.stream(tenant_id, aggregate_id, until=until)
        params = {
            "tenant_id": tenant_id,
            "aggregate_id": aggregate_id,
            "from_version": max(from_version, 1),
            "to_version": validation.MAX_VERSION if to_version is None else to_version,
            "until": until,
        }
        return await self._fetch_events(_READ_STREAM, params)

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
        still open are not returned yet, nor is anything after them.
        """
        if not 0 < limit <= 100_000:
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
                raise UnknownEventTypeError(f"unknown event type(s) {unknown}")
            params["event_types"] = types
        query = _READ_ALL[(tenant_id is not None, types is not None)]
        return await self._fetch_events(query, params)

    async def head(self, *, tenant_id: str | None = None) -> Position:
        """The position of the newest event readers may see now (the start if none)."""
        params = {} if tenant_id is None else {"tenant_id": validation.tenant_id(tenant_id)}
        row = await self._fetchone(_HEAD[tenant_id is not None], params)
        return Position(int(row[0]), int(row[1])) if row else Position.start()

    async def _fetchone(
        self, query: str, params: Sequence[Any] | Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, params)
                return await cur.fetchone()
        except psycopg.Error as e:
            raise translate(e) from e

    async def _fetch_events(self, query: str, params: Mapping[str, object]) -> list[RecordedEvent]:
        try:
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=_recorded_event)
                await cur.execute(query, params)
                events = await cur.fetchall()
        except psycopg.Error as e:
            raise translate(e) from e
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
                    version, data = registry.upcast(
                        event.event_type, event.event_version, event.data
                    )
                    events[index] = event._replace(event_version=version, data=data)
            except domain_errors.CommandValidationError as e:
                where = f"stored event {event.event_id} in {event.tenant_id}/{event.aggregate_id}"
                if isinstance(e, domain_errors.UnknownEventTypeError):
                    raise UnknownEventTypeError(
                        f"{where} has unknown type {event.event_type!r}"
                        f" version {event.event_version}: {e}"
                    ) from e
                raise EventStoreValidationError(f"{where} cannot be read: {e}") from e
        return events


def _recorded_event(cursor: Any) -> Callable[[Sequence[Any]], RecordedEvent]:
    """psycopg row factory: rows in RecordedEvent's column order become RecordedEvents."""
    return RecordedEvent._make
