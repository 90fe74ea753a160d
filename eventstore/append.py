"""Appending events: one statement per stream.

The happy path is a single ``INSERT … SELECT`` that reads the stream's head and inserts the
events only if the expected version (and aggregate type) match, in one round trip. Everything
unusual — a stale expected version, a command stored before, a lost race — shows up as "no rows"
or a unique violation, and only then does the slow path ask the store what happened.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from psycopg_pool import AsyncConnectionPool

from acci.domain.registry import EventRegistry
from acci.eventstore import validation
from acci.eventstore.cipher import event_data_as_stored
from acci.eventstore.errors import (
    CommandIdReusedError,
    ConcurrencyError,
    DuplicateKeyError,
    EventStoreValidationError,
    TooManyEventsError,
    UnsupportedEventTypeError,
    translated,
)
from acci.eventstore.keyring import DataKey
from acci.eventstore.records import (
    ANY,
    IMPLIED_BY_COMMAND,
    AppendResult,
    CommandRecord,
    RecordedEvent,
    StreamAppend,
    event_id_for,
    with_envelope,
)
from acci.eventstore.tenant_scope import scoped

# How often a batch re-runs after losing a race on a stream key ("any version" appends can win
# on a re-run; the others become a ConcurrencyError or a duplicate result on the first).
RACE_RETRIES: Final = 8

# One text for every tenant and stream, so the statement is prepared once per connection. It
# scopes its transaction to the tenant as the load does (eventstore/loading.py): the head is
# read in a LATERAL of `scope`'s row, the inserts take their rows from the head (so WITH CHECK
# sees the tenant; were it otherwise, it would refuse them, never let them through).
_INSERT: Final = """
WITH scope AS MATERIALIZED (
    SELECT set_config('acci.tenant_id', %(tenant_id)s, true) AS tenant_id
), head AS (
    SELECT h.sequence_number FROM scope CROSS JOIN LATERAL (
        SELECT sequence_number FROM event_store.events
         WHERE tenant_id = scope.tenant_id AND aggregate_id = %(aggregate_id)s
           AND aggregate_type = %(aggregate_type)s
         ORDER BY sequence_number DESC LIMIT 1
    ) AS h
), stream AS MATERIALIZED (
    -- Materialized: the version is read once (inlined, the head's index scan ran twice: once
    -- for the expected-version check, once for the new sequence numbers).
    SELECT coalesce((SELECT sequence_number FROM head), 0) AS version
), inserted AS (
    INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,
                                    sequence_number, event_type, event_version, data, metadata,
                                    command_id)
    SELECT e.event_id, %(tenant_id)s, %(aggregate_id)s,
           %(aggregate_type)s, s.version + e.i, e.event_type, e.event_version, e.data,
           e.metadata, %(command_id)s
      FROM stream s,
           jsonb_to_recordset(%(events)s::jsonb)
             AS e(i integer, event_id uuid, event_type text, event_version integer, data jsonb,
                  metadata jsonb)
     WHERE %(expected)s::bigint < 0 OR s.version = %(expected)s::bigint
     ORDER BY e.i
    RETURNING event_id, sequence_number, global_position, transaction_id, created_at
), command AS (
    -- The command's identity, with every event it stores (all its streams): a command id used
    -- before, in any tenant, collides here and the whole statement stores nothing.
    -- Its transaction finds all of them again (eventstore/store.py, command_events).
    INSERT INTO event_store.commands (command_id, tenant_id, aggregate_type, aggregate_id,
                                      command_type, fingerprint, event_ids, transaction_id)
    SELECT %(command_id)s, %(tenant_id)s, %(aggregate_type)s, %(aggregate_id)s,
           %(command_type)s::text, %(fingerprint)s::text, %(command_event_ids)s::uuid[],
           pg_current_xact_id()
     WHERE %(record_command)s::boolean AND EXISTS (SELECT FROM inserted)
)
SELECT event_id, sequence_number, global_position, transaction_id, created_at FROM inserted
"""

_HEAD: Final = (
    "SELECT sequence_number FROM event_store.events"
    " WHERE tenant_id = %s AND aggregate_id = %s AND aggregate_type = %s"
    " ORDER BY sequence_number DESC LIMIT 1"
)

# Whether any tenant's command has this id (acci_app cannot see other tenants'; migration 012).
COMMAND_ID_TAKEN: Final = "SELECT event_store.command_id_taken(%s)"

Rows = list[tuple[Any, ...]]
CommandEvents = Callable[[str, uuid.UUID], Coroutine[Any, Any, list[RecordedEvent]]]
CommandRecords = Callable[[uuid.UUID, str], Coroutine[Any, Any, CommandRecord | None]]


class _Refused(Exception):
    """A statement of a batch inserted nothing: roll the batch back and find out why."""


@dataclass(frozen=True, slots=True)
class PreparedAppend:
    """One stream's append, checked: its statement's parameters, and each event's metadata as
    stored (what the stored events are built from, without reading them back)."""

    params: dict[str, Any]
    metadata: tuple[dict[str, Any], ...]


class Appender:
    """Validates appends, runs them in one round trip, and explains the ones that were refused."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        registry: EventRegistry,
        *,
        max_payload_bytes: int,
        max_events: int,
        command_events: CommandEvents,
        command_record: CommandRecords,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._max_payload_bytes = max_payload_bytes
        self._max_events = max_events
        self._command_events = command_events
        self._command_record = command_record

    def prepare(
        self,
        appends: Sequence[StreamAppend],
        metadata: Mapping[str, Any] | None,
        *,
        keys: Mapping[str, DataKey] | None = None,
    ) -> list[PreparedAppend]:
        """Each append checked and prepared: a command's events are numbered across all the
        streams it touches, and its first stream records it with all of their ids. With
        ``keys`` (tenant: data key), each event's data is sealed with its tenant's key."""
        counts: dict[uuid.UUID, int] = {}
        tenants: dict[uuid.UUID, str] = {}
        firsts = []
        for append in appends:
            validation.tenant_id(append.tenant_id)  # before it names event ids
            if not isinstance(append.command_id, uuid.UUID):
                raise EventStoreValidationError(f"command id {append.command_id!r} is not a UUID")
            first = counts.get(append.command_id, 0)
            if tenants.setdefault(append.command_id, append.tenant_id) != append.tenant_id:
                raise EventStoreValidationError(
                    f"command {append.command_id} cannot append to two tenants"
                )
            counts[append.command_id] = first + len(append.events)
            firsts.append(first)
        ids = {
            command: [event_id_for(tenants[command], command, i) for i in range(total)]
            for command, total in counts.items()
        }
        params = []
        for append, first in zip(appends, firsts, strict=True):
            command_ids = ids[append.command_id]
            params.append(
                self.params(
                    append,
                    metadata,
                    event_ids=command_ids[first : first + len(append.events)],
                    command_event_ids=command_ids if first == 0 else None,
                    data_key=None if keys is None else keys[append.tenant_id],
                )
            )
        return params

    def params(
        self,
        append: StreamAppend,
        metadata: Mapping[str, Any] | None,
        *,
        event_ids: Sequence[uuid.UUID],
        command_event_ids: Sequence[uuid.UUID] | None = None,
        data_key: DataKey | None = None,
    ) -> PreparedAppend:
        """The statement's parameters, after every check on the input (nothing written yet).

        ``event_ids`` are this stream's events' ids; ``command_event_ids``, given to the first
        stream of a command only, records the command with the ids of all its events (a command
        may touch several streams). With ``data_key``, each event's data is sealed with it, bound to
        the tenant and the event's id (eventstore/cipher.py).
        """
        validation.tenant_id(append.tenant_id)
        validation.aggregate_id(append.aggregate_id)
        validation.type_name(append.aggregate_type, "aggregate type")
        expected = _expected_version(append.expected_version)
        count = len(append.events)
        if not 0 < count <= self._max_events:
            raise TooManyEventsError(f"an append takes 1 to {self._max_events} events, got {count}")
        limit, shared = self._max_payload_bytes, metadata or {}
        command = str(append.command_id)
        rows, envelopes = [], []
        for index, event in enumerate(append.events):
            self._check_event_type(event.event_type, event.event_version)
            data = validation.encode_json(event.data, limit=limit, what=f"event {index} data")
            data = event_data_as_stored(
                data, event.data, index, append.tenant_id, event_ids[index], data_key
            )
            envelope = {**shared, **event.metadata}
            # Implied by the command id (a column): not repeated in every event's metadata.
            for field in IMPLIED_BY_COMMAND:
                if envelope.get(field) == command:
                    del envelope[field]
            meta = validation.encode_json(envelope, limit=limit, what=f"event {index} metadata")
            envelopes.append(with_envelope(dict(envelope), append.command_id))
            # data and meta are JSON already: splice them in rather than encode them twice.
            rows.append(
                f'{{"i":{index + 1},"event_id":"{event_ids[index]}",'
                f'"event_type":{json.dumps(event.event_type)},"event_version":{event.event_version},'
                f'"data":{data},"metadata":{meta}}}'
            )
        params = {
            "tenant_id": append.tenant_id,
            "aggregate_id": append.aggregate_id,
            "aggregate_type": append.aggregate_type,
            "command_id": append.command_id,
            "expected": expected,
            "events": f"[{','.join(rows)}]",
            "fingerprint": append.fingerprint,
            "command_type": _text(shared.get("command_type")),
            "record_command": command_event_ids is not None,
            "command_event_ids": list(command_event_ids or ()),
        }
        return PreparedAppend(params, tuple(envelopes))

    def _check_event_type(self, event_type: str, version: int) -> None:
        validation.type_name(event_type, "event type")
        validation.version(version, "event version", minimum=1)
        if not self._registry.is_known(event_type):
            raise UnsupportedEventTypeError(f"unknown event type {event_type!r}")
        current = self._registry.current_version(event_type)
        if version != current:
            raise UnsupportedEventTypeError(
                f"event {event_type!r} version {version} cannot be appended:"
                f" the current version is {current}"
            )

    async def run(
        self, appends: Sequence[StreamAppend], prepared: Sequence[PreparedAppend]
    ) -> list[AppendResult]:
        """Run the appends (all or nothing); explain and re-run what was refused.

        Each result carries the events it stored, built from what was sent and what the
        statement returned (a duplicate's are the stored ones, read back).
        """
        params = [p.params for p in prepared]
        results: list[AppendResult | None] = [None] * len(appends)
        pending = list(range(len(appends)))
        for _ in range(RACE_RETRIES):
            try:
                with translated():
                    rows = await self._execute([params[i] for i in pending])
            except (DuplicateKeyError, _Refused):  # a lost race or a command stored before
                pending = await self._explain(appends, params, pending, results)
                if not pending:
                    return [r for r in results if r is not None]
                continue
            for i, stored in zip(pending, rows, strict=True):
                results[i] = _result(appends[i], prepared[i], stored)
            return [r for r in results if r is not None]
        first = appends[pending[0]]
        raise ConcurrencyError(
            first.tenant_id, first.aggregate_id, "any", await self._version(first)
        )

    async def _execute(self, params: Sequence[dict[str, Any]]) -> list[Rows]:
        async with self._pool.connection() as conn:
            if len(params) == 1:  # one statement is its own transaction: no BEGIN/COMMIT trips
                cur = await conn.execute(_INSERT, params[0])
                rows = await cur.fetchall()
                if not rows:
                    raise _Refused
                return [rows]
            async with conn.transaction():
                async with conn.pipeline():
                    # Each statement scopes the transaction to its own stream's tenant.
                    cursors = [await conn.execute(_INSERT, p) for p in params]
                stored = [await cur.fetchall() for cur in cursors]
                if not all(stored):
                    raise _Refused  # leaves the transaction: the whole batch rolls back
                return stored

    async def _explain(
        self,
        appends: Sequence[StreamAppend],
        params: Sequence[dict[str, Any]],
        pending: list[int],
        results: list[AppendResult | None],
    ) -> list[int]:
        """Fill in the duplicates, raise for real conflicts; what is left may run again."""
        again = []
        for i in pending:
            append = appends[i]
            record = await self._command_record(append.command_id, append.tenant_id)
            if record is not None:
                results[i] = await self._stored(append, record, params[i]["command_type"])
                continue
            if await self._value(COMMAND_ID_TAKEN, (append.command_id,)):
                # Stored by another tenant's command, which this role may not see.
                raise CommandIdReusedError(append.command_id)
            version = await self._version(append)
            if append.expected_version != ANY and version != append.expected_version:
                raise ConcurrencyError(
                    append.tenant_id, append.aggregate_id, append.expected_version, version
                )
            again.append(i)  # lost a race it can still win: "any", or the winner rolled back
        return again

    async def _stored(
        self, append: StreamAppend, record: CommandRecord, command_type: str | None
    ) -> AppendResult:
        """The first append of this command again, or ``CommandIdReusedError`` if the id named
        another command (the error names nothing of that one)."""
        if record.tenant_id == append.tenant_id:
            events = await self._command_events(append.tenant_id, append.command_id)
            stream = (append.aggregate_type, append.aggregate_id)
            mine = [e for e in events if (e.aggregate_type, e.aggregate_id) == stream]
            # This stream may be the command's first (the record's) or a later one of it: the
            # record is checked for the command as a whole, the events for this stream.
            primary = (record.aggregate_type, record.aggregate_id)
            if mine and record.may_be(append.tenant_id, *primary, command_type, append.fingerprint):
                # Without both fingerprints, what was stored must be what is sent.
                if record.fingerprint is not None and append.fingerprint is not None:
                    return AppendResult.of_events(mine, duplicate=True)
                if [(e.event_type, e.data) for e in mine] == [
                    (e.event_type, e.data) for e in append.events
                ]:
                    return AppendResult.of_events(mine, duplicate=True)
        raise CommandIdReusedError(append.command_id)

    async def _version(self, a: StreamAppend) -> int:
        head = (a.tenant_id, a.aggregate_id, a.aggregate_type)
        return int(await self._value(_HEAD, head, tenant_id=a.tenant_id) or 0)

    async def _value(self, query: str, params: tuple[Any, ...], *, tenant_id: str = "") -> Any:
        """The first column of the first row (None: no row); read in ``tenant_id`` if given."""
        with translated():
            async with scoped(self._pool, tenant_id) if tenant_id else self._pool.connection() as c:
                row = await (await c.execute(query, params)).fetchone()
        return row[0] if row else None


def _result(append: StreamAppend, prepared: PreparedAppend, rows: Rows) -> AppendResult:
    """The result of a stored append, with its events as a read would return them."""
    events = []
    for row, event, metadata in zip(
        sorted(rows, key=lambda r: r[1]), append.events, prepared.metadata, strict=True
    ):
        event_id, sequence_number, global_position, transaction_id, created_at = row
        events.append(
            RecordedEvent(
                event_id,
                append.tenant_id,
                append.aggregate_id,
                append.aggregate_type,
                int(sequence_number),
                event.event_type,
                event.event_version,
                event.data,
                metadata,
                append.command_id,
                created_at,
                int(global_position),
                int(transaction_id),
            )
        )
    return AppendResult.of_events(events, duplicate=False)


def _expected_version(expected: object) -> int:
    if (
        isinstance(expected, bool)
        or not isinstance(expected, int)
        or not ANY <= expected <= validation.MAX_VERSION
    ):
        raise EventStoreValidationError(
            f"expected version {expected!r} is not ANY (-1), NO_STREAM (0) or a stream version"
            f" (at most {validation.MAX_VERSION})"
        )
    return expected


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
