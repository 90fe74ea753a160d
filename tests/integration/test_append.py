"""Appending: versions, optimistic concurrency, idempotency, batches."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.errors import (
    CommandIdReusedError,
    ConcurrencyError,
    TooManyEventsError,
)
from acci.eventstore.records import ANY, NO_STREAM, StreamAppend, event_id_for
from acci.eventstore.store import EventStore
from tests.integration.conftest import count_rows
from tests.integration.events import noted


def new_id(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def test_append_returns_new_version_ids_and_positions(test_store: EventStore) -> None:
    stream, command = new_id(), uuid.uuid4()
    result = await test_store.append(
        "t-append",
        stream,
        "Note",
        [noted("a"), noted("b")],
        command_id=command,
        expected_version=NO_STREAM,
    )
    assert result.stream_version == 2
    assert result.event_ids == (
        event_id_for("t-append", command, 0),
        event_id_for("t-append", command, 1),
    )
    assert result.positions[0] < result.positions[1]
    assert not result.duplicate
    stored = await test_store.read_stream("t-append", stream)
    assert [e.data["text"] for e in stored] == ["a", "b"]
    assert [e.sequence_number for e in stored] == [1, 2]
    assert {e.command_id for e in stored} == {command}
    assert [e.position for e in stored] == list(result.positions)


async def test_an_append_returns_its_events_as_a_read_of_them_returns_them(
    test_store: EventStore,
) -> None:
    """The command path publishes what the append returned instead of reading it back: it must
    be what is stored, envelope included (a correlation or causation id equal to the command id
    is implied, not stored, and read back as the command id), in every stream the command
    touched, in global order."""
    command = uuid.uuid4()
    first, second = new_id(), new_id()
    appends = [
        StreamAppend("t-append", first, "Note", (noted("a", path="x"), noted("b")), command),
        StreamAppend("t-append", second, "Note", (noted("c"),), command),
    ]
    shared = {"correlation_id": str(command), "causation_id": "elsewhere", "user": "ü"}
    results = await test_store.append_many(appends, metadata=shared)
    returned = [e for r in results for e in r.events]
    stored = await test_store.command_events("t-append", command)
    assert returned == stored
    implied = {"correlation_id": str(command), "causation_id": "elsewhere"}
    assert [e.metadata for e in returned] == [
        {**implied, "user": "ü", "path": "x"},
        {**implied, "user": "ü"},
        {**implied, "user": "ü"},
    ]
    # Not stored: a column says it already.
    async with test_store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT metadata FROM event_store.events WHERE command_id = %s", (command,)
        )
        assert all("correlation_id" not in row[0] for row in await cur.fetchall())
    again = await test_store.append_many(appends, metadata=shared)
    assert [r.duplicate for r in again] == [True, True]
    assert [e for r in again for e in r.events] == stored


async def test_wrong_expected_version_raises_concurrency_error_naming_both(
    test_store: EventStore,
) -> None:
    stream = new_id()
    await test_store.append("t-append", stream, "Note", [noted()], command_id=uuid.uuid4())
    with pytest.raises(ConcurrencyError) as caught:
        await test_store.append(
            "t-append", stream, "Note", [noted()], command_id=uuid.uuid4(), expected_version=3
        )
    assert (caught.value.expected, caught.value.actual) == (3, 1)
    assert "expected version 3, actual 1" in str(caught.value)


async def test_no_stream_expectation_rejects_an_existing_stream(test_store: EventStore) -> None:
    stream = new_id()
    await test_store.append("t-append", stream, "Note", [noted()], command_id=uuid.uuid4())
    with pytest.raises(ConcurrencyError):
        await test_store.append(
            "t-append",
            stream,
            "Note",
            [noted()],
            command_id=uuid.uuid4(),
            expected_version=NO_STREAM,
        )


async def test_two_concurrent_appends_at_the_same_expected_version_exactly_one_succeeds(
    test_store: EventStore,
) -> None:
    for _ in range(10):
        stream = new_id()
        await test_store.append("t-append", stream, "Note", [noted()], command_id=uuid.uuid4())
        outcomes = await asyncio.gather(
            *(
                test_store.append(
                    "t-append",
                    stream,
                    "Note",
                    [noted(str(i))],
                    command_id=uuid.uuid4(),
                    expected_version=1,
                )
                for i in range(2)
            ),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], ConcurrencyError), outcomes
        assert errors[0].actual == 2
        assert await test_store.stream_version("t-append", stream, "Note") == 2


async def test_concurrent_any_version_appends_all_land_contiguously(
    test_store: EventStore,
) -> None:
    stream = new_id()
    await asyncio.gather(
        *(
            test_store.append("t-append", stream, "Note", [noted(str(i))], command_id=uuid.uuid4())
            for i in range(16)
        )
    )
    stored = await test_store.read_stream("t-append", stream)
    assert [e.sequence_number for e in stored] == list(range(1, 17))


async def test_second_append_with_same_command_id_returns_first_result(
    test_store: EventStore, pool: AsyncConnectionPool
) -> None:
    stream, command = new_id(), uuid.uuid4()
    first = await test_store.append(
        "t-append",
        stream,
        "Note",
        [noted("x"), noted("y")],
        command_id=command,
        expected_version=NO_STREAM,
    )
    before = await count_rows(pool)
    again = await test_store.append(
        "t-append",
        stream,
        "Note",
        [noted("x"), noted("y")],
        command_id=command,
        expected_version=NO_STREAM,
    )
    assert again.duplicate
    assert (again.stream_version, again.event_ids, again.positions) == (
        first.stream_version,
        first.event_ids,
        first.positions,
    )
    assert await count_rows(pool) == before


async def test_same_command_after_the_stream_moved_on_still_returns_first_result(
    test_store: EventStore,
) -> None:
    stream, command = new_id(), uuid.uuid4()
    first = await test_store.append(
        "t-append", stream, "Note", [noted("first")], command_id=command, expected_version=0
    )
    await test_store.append("t-append", stream, "Note", [noted("later")], command_id=uuid.uuid4())
    again = await test_store.append(
        "t-append", stream, "Note", [noted("first")], command_id=command, expected_version=0
    )
    assert again.duplicate and again.event_ids == first.event_ids
    assert again.stream_version == 1
    assert await test_store.stream_version("t-append", stream, "Note") == 2


async def test_same_command_appended_concurrently_stores_one_set_of_events(
    test_store: EventStore,
) -> None:
    # Repeated: the race (a copy committing between another copy's lookup and its version
    # check) only shows up now and then.
    for _ in range(50):
        stream, command = new_id(), uuid.uuid4()
        results = await asyncio.gather(
            *(
                test_store.append(
                    "t-append",
                    stream,
                    "Note",
                    [noted("a"), noted("b")],
                    command_id=command,
                    expected_version=expected,
                )
                for expected in (ANY, NO_STREAM) * 4
            )
        )
        assert len({(r.event_ids, r.positions) for r in results}) == 1
        assert sum(not r.duplicate for r in results) == 1
        assert len(await test_store.read_stream("t-append", stream)) == 2


async def test_a_command_id_cannot_be_reused_for_another_stream(test_store: EventStore) -> None:
    command = uuid.uuid4()
    await test_store.append("t-append", new_id(), "Note", [noted()], command_id=command)
    other = new_id()
    with pytest.raises(CommandIdReusedError, match="already used for a different command"):
        await test_store.append("t-append", other, "Note", [noted()], command_id=command)
    assert await test_store.read_stream("t-append", other) == []


async def test_a_command_id_cannot_be_reused_in_another_tenant(test_store: EventStore) -> None:
    command, stream = uuid.uuid4(), new_id()
    await test_store.append("t-append", stream, "Note", [noted()], command_id=command)
    with pytest.raises(CommandIdReusedError) as refused:
        await test_store.append("t-other", stream, "Note", [noted()], command_id=command)
    # The refusal tells the second sender nothing about the first command.
    assert "t-append" not in str(refused.value) and stream not in str(refused.value)
    assert await test_store.read_stream("t-other", stream) == []


async def test_a_command_id_sent_with_another_fingerprint_is_refused(
    test_store: EventStore,
) -> None:
    command, stream = uuid.uuid4(), new_id()
    first = await test_store.append(
        "t-append", stream, "Note", [noted("a")], command_id=command, fingerprint="f1"
    )
    again = await test_store.append(
        "t-append", stream, "Note", [noted("a")], command_id=command, fingerprint="f1"
    )
    assert again.duplicate and again.event_ids == first.event_ids
    with pytest.raises(CommandIdReusedError):
        await test_store.append(
            "t-append", stream, "Note", [noted("b")], command_id=command, fingerprint="f2"
        )
    assert len(await test_store.read_stream("t-append", stream)) == 1


async def test_without_fingerprints_a_resent_command_must_store_the_same_events(
    test_store: EventStore,
) -> None:
    command, stream = uuid.uuid4(), new_id()
    first = await test_store.append("t-append", stream, "Note", [noted("a")], command_id=command)
    again = await test_store.append("t-append", stream, "Note", [noted("a")], command_id=command)
    assert again.duplicate and again.event_ids == first.event_ids
    with pytest.raises(CommandIdReusedError):
        await test_store.append("t-append", stream, "Note", [noted("b")], command_id=command)
    assert len(await test_store.read_stream("t-append", stream)) == 1


async def test_a_command_stored_without_a_type_is_not_taken_for_another_type(
    test_store: EventStore,
) -> None:
    command, stream = uuid.uuid4(), new_id()
    await test_store.append(
        "t-append",
        stream,
        "Note",
        [noted("a")],
        command_id=command,
        metadata={"command_type": "Write"},
    )
    record = await test_store.command_record(command)
    assert record is not None
    assert (record.aggregate_type, record.command_type) == ("Note", "Write")
    assert not record.may_be("t-append", "Note", stream, "Erase", None)
    assert not record.may_be("t-append", "Other", stream, "Write", None)
    assert record.may_be("t-append", "Note", stream, "Write", None)


def test_event_ids_differ_between_tenants_for_one_command_id() -> None:
    command = uuid.uuid4()
    assert event_id_for("t-a", command, 0) != event_id_for("t-b", command, 0)
    assert event_id_for("t-a", command, 0) == event_id_for("t-a", command, 0)


async def test_one_command_over_two_streams_is_recorded_with_all_its_events(
    test_store: EventStore,
) -> None:
    command, first, second = uuid.uuid4(), new_id(), new_id()
    appends = [
        StreamAppend("t-append", first, "Note", (noted("a"), noted("b")), command, NO_STREAM),
        StreamAppend("t-append", second, "Note", (noted("c"),), command, NO_STREAM),
    ]
    results = await test_store.append_many(appends)
    assert [len(r.event_ids) for r in results] == [2, 1]
    assert len({*results[0].event_ids, *results[1].event_ids}) == 3
    events = await test_store.command_events("t-append", command)
    assert [e.aggregate_id for e in events] == [first, first, second]
    stored = await test_store.command_result("t-append", command)
    assert stored is not None and stored.aggregate_id == first and stored.stream_version == 2
    # Sent again, both streams answer with what they stored; nothing new is written.
    again = await test_store.append_many(appends)
    assert all(r.duplicate for r in again)
    assert [r.event_ids for r in again] == [r.event_ids for r in results]


async def test_two_aggregate_types_with_one_id_are_two_streams(test_store: EventStore) -> None:
    stream = new_id()
    note = await test_store.append(
        "t-append", stream, "Note", [noted(), noted()], command_id=uuid.uuid4()
    )
    other = await test_store.append(
        "t-append", stream, "Other", [noted()], command_id=uuid.uuid4(), expected_version=NO_STREAM
    )
    assert (note.stream_version, other.stream_version) == (2, 1)
    assert await test_store.stream_version("t-append", stream, "Note") == 2
    assert await test_store.stream_version("t-append", stream, "Other") == 1
    only = await test_store.read_stream("t-append", stream, aggregate_type="Other")
    assert [(e.aggregate_type, e.sequence_number) for e in only] == [("Other", 1)]
    both = await test_store.read_stream("t-append", stream)
    assert [(e.aggregate_type, e.sequence_number) for e in both] == [
        ("Note", 1),
        ("Note", 2),
        ("Other", 1),
    ]


async def test_an_append_takes_one_to_max_events(test_store: EventStore) -> None:
    with pytest.raises(TooManyEventsError, match="got 0"):
        await test_store.append("t-append", new_id(), "Note", [], command_id=uuid.uuid4())
    with pytest.raises(TooManyEventsError, match="got 101"):
        await test_store.append(
            "t-append", new_id(), "Note", [noted()] * 101, command_id=uuid.uuid4()
        )


async def test_append_many_stores_all_streams_in_one_transaction(test_store: EventStore) -> None:
    streams = [new_id() for _ in range(5)]
    results = await test_store.append_many(
        [
            StreamAppend("t-batch", s, "Note", (noted(s), noted(s)), uuid.uuid4(), NO_STREAM)
            for s in streams
        ]
    )
    assert [r.stream_version for r in results] == [2] * 5
    # One transaction: every event shares its transaction id.
    assert len({p.transaction_id for r in results for p in r.positions}) == 1


async def test_append_many_is_all_or_nothing(
    test_store: EventStore, pool: AsyncConnectionPool
) -> None:
    existing = new_id()
    await test_store.append("t-batch", existing, "Note", [noted()], command_id=uuid.uuid4())
    before = await count_rows(pool)
    fresh = [new_id() for _ in range(3)]
    batch = [StreamAppend("t-batch", s, "Note", (noted(),), uuid.uuid4(), NO_STREAM) for s in fresh]
    batch.append(StreamAppend("t-batch", existing, "Note", (noted(),), uuid.uuid4(), NO_STREAM))
    with pytest.raises(ConcurrencyError) as caught:
        await test_store.append_many(batch)
    assert caught.value.aggregate_id == existing
    assert await count_rows(pool) == before
    for s in fresh:
        assert await test_store.stream_version("t-batch", s, "Note") == 0


async def test_append_many_of_commands_already_stored_returns_their_results(
    test_store: EventStore,
) -> None:
    batch = [
        StreamAppend("t-batch", new_id(), "Note", (noted(),), uuid.uuid4(), NO_STREAM)
        for _ in range(3)
    ]
    first = await test_store.append_many(batch)
    again = await test_store.append_many(batch)
    assert [r.event_ids for r in again] == [r.event_ids for r in first]
    assert all(r.duplicate for r in again)
