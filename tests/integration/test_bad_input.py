"""Hostile and malformed input: a typed error with a clear message, and nothing written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from acci.activities.errors import application_error
from acci.eventstore.errors import (
    EventStoreValidationError,
    InvalidIdentifierError,
    PayloadTooLargeError,
    UnsupportedEventTypeError,
)
from acci.eventstore.records import NewEvent, Position
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.eventstore.validation import MAX_JSON_DEPTH, MAX_VERSION
from tests.integration.conftest import count_rows
from tests.integration.events import noted

HOSTILE_IDS = [
    "x'; DROP TABLE event_store.events;--",
    "a OR 1=1",
    "tenant\x00nul",
    "ünïcode",
    "-leading-dash",
    "",
    "a" * 65,
    "line\nbreak",
    "a.b",  # dots would split RabbitMQ routing keys
]


@pytest.mark.parametrize("tenant", HOSTILE_IDS)
async def test_hostile_tenant_ids_are_refused_and_nothing_is_written(
    test_store: EventStore, pool: AsyncConnectionPool, tenant: str
) -> None:
    before = await count_rows(pool), await count_rows(pool, "event_store.commands")
    with pytest.raises(InvalidIdentifierError, match="invalid tenant id"):
        await test_store.append(tenant, "agg-1", "Note", [noted()], command_id=uuid.uuid4())
    with pytest.raises(InvalidIdentifierError):
        await test_store.read_stream(tenant, "agg-1")
    after = await count_rows(pool), await count_rows(pool, "event_store.commands")
    assert after == before


@pytest.mark.parametrize(
    "aggregate_id", ["x'; DELETE FROM event_store.events;--", "", "a" * 129, "sp ace", "\t"]
)
async def test_hostile_aggregate_ids_are_refused(
    test_store: EventStore, pool: AsyncConnectionPool, aggregate_id: str
) -> None:
    before = await count_rows(pool)
    with pytest.raises(InvalidIdentifierError, match="invalid aggregate id"):
        await test_store.append("t-bad", aggregate_id, "Note", [noted()], command_id=uuid.uuid4())
    assert await count_rows(pool) == before


async def test_sql_looking_payloads_are_stored_verbatim(test_store: EventStore) -> None:
    text = "'); DROP TABLE event_store.events; -- \" \\ $$ %s {}"
    await test_store.append("t-bad", "verbatim", "Note", [noted(text)], command_id=uuid.uuid4())
    (stored,) = await test_store.read_stream("t-bad", "verbatim")
    assert stored.data == {"text": text}


async def test_an_oversized_payload_is_refused_and_nothing_is_written(
    test_store: EventStore, pool: AsyncConnectionPool
) -> None:
    before = await count_rows(pool)
    small, big = noted("fits"), noted("x" * (16 * 1024 + 1))
    with pytest.raises(
        PayloadTooLargeError, match=r"event 1 data is 163\d\d bytes; the limit is 16384"
    ):
        await test_store.append("t-bad", "big", "Note", [small, big], command_id=uuid.uuid4())
    with pytest.raises(PayloadTooLargeError, match="metadata"):
        await test_store.append(
            "t-bad", "big", "Note", [noted(blob="y" * 20_000)], command_id=uuid.uuid4()
        )
    assert await count_rows(pool) == before


async def test_nul_characters_and_non_json_values_are_refused(test_store: EventStore) -> None:
    with pytest.raises(EventStoreValidationError, match="NUL"):
        await test_store.append("t-bad", "nul", "Note", [noted("a\x00b")], command_id=uuid.uuid4())
    with pytest.raises(EventStoreValidationError, match="not JSON-serialisable"):
        await test_store.append(
            "t-bad",
            "nan",
            "Note",
            [NewEvent("Noted", 1, {"text": float("nan")})],
            command_id=uuid.uuid4(),
        )


async def test_unknown_event_types_are_refused_on_append_and_on_read(
    test_store: EventStore, pool: AsyncConnectionPool
) -> None:
    before = await count_rows(pool)
    with pytest.raises(UnsupportedEventTypeError, match="unknown event type 'Invented'"):
        await test_store.append(
            "t-bad", "u1", "Note", [NewEvent("Invented", 1, {})], command_id=uuid.uuid4()
        )
    with pytest.raises(UnsupportedEventTypeError, match="current version is 1"):
        await test_store.append(
            "t-bad", "u1", "Note", [NewEvent("Noted", 7, {"text": "x"})], command_id=uuid.uuid4()
        )
    with pytest.raises(InvalidIdentifierError, match="invalid event type"):
        await test_store.append(
            "t-bad", "u1", "Note", [NewEvent("Noted'; --", 1, {})], command_id=uuid.uuid4()
        )
    assert await count_rows(pool) == before
    with pytest.raises(UnsupportedEventTypeError, match="Invented"):
        await test_store.read_all(Position.start(), event_types=["Invented"])


async def test_a_stored_event_of_an_unknown_type_is_a_typed_error_on_read(
    test_store: EventStore, pool: AsyncConnectionPool
) -> None:
    async with pool.connection() as conn:
        # Written by some other program that knows event types this one does not.
        await conn.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, command_id)"
            " VALUES (gen_random_uuid(), 't-alien', 'x', 'Note', 1, 'FromTheFuture', 1, '{}',"
            " gen_random_uuid())"
        )
    with pytest.raises(UnsupportedEventTypeError, match="unknown type 'FromTheFuture'"):
        await test_store.read_stream("t-alien", "x")


async def test_a_bad_expected_version_or_command_id_is_refused(test_store: EventStore) -> None:
    with pytest.raises(EventStoreValidationError, match="expected version"):
        await test_store.append(
            "t-bad", "v1", "Note", [noted()], command_id=uuid.uuid4(), expected_version=-5
        )
    with pytest.raises(EventStoreValidationError, match="not a UUID"):
        await test_store.append(
            "t-bad",
            "v1",
            "Note",
            [noted()],
            command_id="not-a-uuid",  # type: ignore[arg-type]
        )


def _nested(depth: int) -> list[Any]:
    """A list ``depth`` levels deep, built without recursion."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(noted("lone \ud800 surrogate"), id="in data"),
        pytest.param(NewEvent("Noted", 1, {"text": "x", "\udfff": 1}), id="in a data key"),
        pytest.param(noted(source="lone \udc80"), id="in metadata"),
    ],
)
async def test_text_that_is_not_unicode_is_refused_and_nothing_is_written(
    test_store: EventStore, pool: AsyncConnectionPool, event: NewEvent
) -> None:
    before = await count_rows(pool)
    with pytest.raises(EventStoreValidationError, match="lone surrogate"):
        await test_store.append("t-bad", "surrogate", "Note", [event], command_id=uuid.uuid4())
    assert await count_rows(pool) == before


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000])
async def test_deep_nesting_is_refused_with_a_typed_error(
    test_store: EventStore, pool: AsyncConnectionPool, depth: int
) -> None:
    before = await count_rows(pool)
    with pytest.raises(EventStoreValidationError, match=f"nested more than {MAX_JSON_DEPTH}"):
        await test_store.append(
            "t-bad",
            "deep",
            "Note",
            [NewEvent("Noted", 1, {"text": "x", "tree": _nested(depth - 1)})],
            command_id=uuid.uuid4(),
        )
    assert await count_rows(pool) == before


async def test_nesting_up_to_the_limit_is_stored(test_store: EventStore) -> None:
    data = {"text": "x", "tree": _nested(MAX_JSON_DEPTH - 1)}
    await test_store.append(
        "t-bad", "deep-ok", "Note", [NewEvent("Noted", 1, data)], command_id=uuid.uuid4()
    )
    (stored,) = await test_store.read_stream("t-bad", "deep-ok")
    assert stored.data == data


async def test_a_backslash_before_u0000_is_text_not_a_nul(test_store: EventStore) -> None:
    text = "C:\\u0000dir"  # a backslash and the letters u0000: no NUL anywhere
    await test_store.append(
        "t-bad", "backslash", "Note", [noted(text, path=text)], command_id=uuid.uuid4()
    )
    (stored,) = await test_store.read_stream("t-bad", "backslash")
    assert stored.data == {"text": text}
    assert stored.metadata["path"] == text


@pytest.mark.parametrize("expected", [2**63, MAX_VERSION + 1, True, 1.0])
async def test_an_expected_version_out_of_range_is_a_validation_error(
    test_store: EventStore, pool: AsyncConnectionPool, expected: Any
) -> None:
    before = await count_rows(pool)
    with pytest.raises(EventStoreValidationError, match="expected version") as refused:
        await test_store.append(
            "t-bad", "v2", "Note", [noted()], command_id=uuid.uuid4(), expected_version=expected
        )
    # A validation error, so the command activity fails at once instead of retrying forever.
    reported = application_error(refused.value)
    assert (reported.type, reported.non_retryable) == ("CommandValidationError", True)
    assert await count_rows(pool) == before


@pytest.mark.parametrize(
    ("version", "schema_version", "state", "says"),
    [
        (2**63, 1, {}, "snapshot version"),
        (0, 1, {}, "snapshot version"),
        (1, 2**31, {}, "schema version"),
        (1, True, {}, "schema version"),
        (1, 1, {"name": "\ud800"}, "lone surrogate"),
        (1, 1, {"name": "a\x00b"}, "NUL"),
        (1, 1, {"tree": _nested(5_000)}, "nested more than"),
    ],
)
async def test_bad_snapshots_are_refused_and_nothing_is_written(
    snapshots: SnapshotStore,
    pool: AsyncConnectionPool,
    version: Any,
    schema_version: Any,
    state: dict[str, Any],
    says: str,
) -> None:
    before = await count_rows(pool, "snapshots.aggregate_snapshots")
    with pytest.raises(EventStoreValidationError, match=says):
        await snapshots.save(
            "t-bad", "snap", "Note", version=version, schema_version=schema_version, state=state
        )
    assert await count_rows(pool, "snapshots.aggregate_snapshots") == before


@pytest.mark.parametrize(
    ("schema_version", "at_or_below"), [(1, 2**63), (1, -1), (2**40, None), (True, None)]
)
async def test_a_snapshot_load_checks_its_versions(
    snapshots: SnapshotStore, schema_version: Any, at_or_below: Any
) -> None:
    with pytest.raises(EventStoreValidationError, match="version"):
        await snapshots.load(
            "t-bad", "snap", "Tenant", schema_version=schema_version, at_or_below=at_or_below
        )


async def test_a_tenant_id_that_is_not_unicode_is_refused_before_ids_are_derived(
    test_store: EventStore, pool: AsyncConnectionPool
) -> None:
    before = await count_rows(pool)
    with pytest.raises(EventStoreValidationError, match="tenant id"):
        await test_store.append(
            "t-\ud800", "surrogate", "Note", [noted("x")], command_id=uuid.uuid4()
        )
    assert await count_rows(pool) == before
