"""Reading: streams, temporal queries, the gap-free global order, the tenant layout."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.errors import EventStoreValidationError
from acci.eventstore.global_order import WRITER_LOCK
from acci.eventstore.records import START, Position, RecordedEvent
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from tests.conftest import SERVER_URL
from tests.integration.events import counted, noted


def new_id(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def read_everything(
    store: EventStore, after: Position = START, **filters: object
) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    while page := await store.read_all(after, limit=7, **filters):  # type: ignore[arg-type]
        events.extend(page)
        after = page[-1].position
    return events


async def test_read_stream_between_versions(test_store: EventStore) -> None:
    stream = new_id()
    for i in range(5):
        await test_store.append("t-read", stream, "Note", [noted(str(i))], command_id=uuid.uuid4())
    window = await test_store.read_stream("t-read", stream, from_version=2, to_version=4)
    assert [e.sequence_number for e in window] == [2, 3, 4]


async def test_read_stream_up_to_a_time(test_store: EventStore, pool: AsyncConnectionPool) -> None:
    stream = new_id()
    for i in range(3):
        await test_store.append("t-read", stream, "Note", [noted(str(i))], command_id=uuid.uuid4())
    # Age the first two events so that "as of" has something to cut between.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE event_store.events SET created_at = created_at - interval '1 hour'"
            " WHERE tenant_id = 't-read' AND aggregate_id = %s AND sequence_number <= 2",
            (stream,),
        )
    cut = datetime.now(UTC) - timedelta(minutes=30)
    assert [
        e.sequence_number for e in await test_store.read_stream("t-read", stream, until=cut)
    ] == [1, 2]
    with pytest.raises(EventStoreValidationError, match="no time zone"):
        await test_store.read_stream("t-read", stream, until=datetime(2020, 1, 1))


async def test_read_all_pages_through_the_global_order(test_store: EventStore) -> None:
    start = await test_store.head()
    appended = []
    for i in range(20):
        r = await test_store.append(
            "t-read", new_id(), "Note", [noted(str(i))], command_id=uuid.uuid4()
        )
        appended.extend(r.event_ids)
    seen = await read_everything(test_store, start)
    assert [e.event_id for e in seen] == appended
    assert await test_store.head() == seen[-1].position


async def test_read_all_filters_by_tenant_and_event_type(test_store: EventStore) -> None:
    start = await test_store.head()
    await test_store.append(
        "t-one", new_id(), "Note", [noted(), counted(1)], command_id=uuid.uuid4()
    )
    await test_store.append(
        "t-two", new_id(), "Note", [noted(), counted(2)], command_id=uuid.uuid4()
    )
    ones = await read_everything(test_store, start, tenant_id="t-one")
    assert {e.tenant_id for e in ones} == {"t-one"} and len(ones) == 2
    counts = await read_everything(test_store, start, event_types=["Counted"])
    assert [e.data for e in counts] == [{"value": 1}, {"value": 2}]
    both = await read_everything(test_store, start, tenant_id="t-two", event_types=["Counted"])
    assert [e.data for e in both] == [{"value": 2}]


async def test_a_new_tenant_needs_no_tables_of_its_own(
    test_store: EventStore, snapshots: SnapshotStore, pool: AsyncConnectionPool
) -> None:
    """Every tenant lives in the same two tables: the first write of a tenant does no DDL."""

    async def relations() -> list[tuple[str, str]]:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname IN ('event_store', 'snapshots') ORDER BY 1, 2"
            )
            return [(str(a), str(b)) for a, b in await cur.fetchall()]

    before = await relations()
    tenant = new_id("tenant")
    await test_store.append(tenant, "a1", "Note", [noted()], command_id=uuid.uuid4())
    await snapshots.save(tenant, "a1", "Note", version=1, schema_version=1, state={"n": 1})
    assert await relations() == before
    assert ("event_store", "events") in before and ("snapshots", "aggregate_snapshots") in before
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent IN"
            " ('event_store.events'::regclass, 'snapshots.aggregate_snapshots'::regclass)"
        )
        assert await cur.fetchone() == (0,)  # not partitioned


async def test_one_tenants_reads_never_return_another_tenants_events(
    test_store: EventStore,
) -> None:
    # The same aggregate id in two tenants is two different streams.
    await test_store.append(
        "t-alpha", "shared-id", "Note", [noted("alpha")], command_id=uuid.uuid4()
    )
    await test_store.append("t-beta", "shared-id", "Note", [noted("beta")], command_id=uuid.uuid4())
    alpha = await test_store.read_stream("t-alpha", "shared-id")
    assert [(e.tenant_id, e.data["text"]) for e in alpha] == [("t-alpha", "alpha")]
    assert {e.tenant_id for e in await read_everything(test_store, tenant_id="t-beta")} == {
        "t-beta"
    }


async def test_tailing_reader_sees_every_event_exactly_once_despite_a_late_commit(
    test_store: EventStore, pool: AsyncConnectionPool, database_url: str
) -> None:
    """8 writers append while one transaction, begun first, commits last.

    A reader that trusted global_position alone would pass over the late transaction's event
    (it has a smaller position than events committed before it); the tailing reader must not.
    """
    tenant = "t-order"
    start = await test_store.head()
    late_stream = new_id("late")
    appended: list[uuid.UUID] = []
    committed = asyncio.Event()
    seen: list[RecordedEvent] = []
    naive_seen: set[uuid.UUID] = set()

    async with await psycopg.AsyncConnection.connect(database_url) as late:
        # Take a position (and a transaction id) before any writer, then hold the commit.
        late_command = uuid.uuid4()
        cur = await late.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, command_id)"
            " VALUES (%s, %s, %s, 'Note', 1, 'Noted', 1, '{\"text\": \"late\"}', %s)"
            " RETURNING event_id",
            (uuid.uuid5(late_command, "0"), tenant, late_stream, late_command),
        )
        late_event = (await cur.fetchone())[0]  # type: ignore[index]

        async def writer(w: int) -> None:
            for i in range(25):
                r = await test_store.append(
                    tenant, f"w{w}-{i % 5}", "Note", [noted(f"{w}.{i}")], command_id=uuid.uuid4()
                )
                appended.extend(r.event_ids)

        async def reader() -> None:
            position = start
            naive_position = 0
            while True:
                # Read after the commit, then stop at the first empty page.
                finished = committed.is_set()
                page = await test_store.read_all(position, limit=50, tenant_id=tenant)
                seen.extend(page)
                if page:
                    position = page[-1].position
                # The naive reader: everything committed above the last global_position seen.
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        "SELECT event_id, global_position FROM event_store.events"
                        " WHERE tenant_id = %s AND global_position > %s ORDER BY global_position",
                        (tenant, naive_position),
                    )
                    for event_id, gp in await cur.fetchall():
                        naive_seen.add(event_id)
                        naive_position = gp
                if finished and not page:
                    return
                await asyncio.sleep(0)

        read_task = asyncio.create_task(reader())
        await asyncio.gather(*(writer(w) for w in range(8)))
        # While the late transaction is open, nothing committed after it is visible to the
        # gap-free reader: it is held back, not skipping ahead.
        assert late_event not in {e.event_id for e in seen}
        assert not {e.event_id for e in seen} & set(appended)
        await late.commit()
        committed.set()
        await asyncio.wait_for(read_task, timeout=60)

    ids = [e.event_id for e in seen]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert set(ids) == set(appended) | {late_event}, "an event was never delivered"
    assert [e.position for e in seen] == sorted(e.position for e in seen)
    # The scenario is real: ordering by global_position alone skipped the late event.
    assert late_event not in naive_seen


async def test_an_open_write_transaction_elsewhere_on_the_server_does_not_hold_readers_back(
    test_store: EventStore, database_url: str
) -> None:
    start = await test_store.head()
    # A write transaction in another database of the same server, open throughout.
    async with await psycopg.AsyncConnection.connect(SERVER_URL) as elsewhere:
        await elsewhere.execute("SELECT pg_current_xact_id()")  # takes a transaction id
        appended = await test_store.append(
            "t-read", new_id(), "Note", [noted("x")], command_id=uuid.uuid4()
        )
        assert [e.event_id for e in await read_everything(test_store, start)] == list(
            appended.event_ids
        )
        await elsewhere.rollback()


async def test_an_open_event_writing_transaction_in_this_database_holds_readers_back_until_it_ends(
    test_store: EventStore, database_url: str
) -> None:
    start = await test_store.head()
    async with await psycopg.AsyncConnection.connect(database_url) as here:
        # Registered as an event writer (migration 005), then given its id: could be about to
        # append. (A write transaction that is not an event writer holds nobody back:
        # tests/integration/test_event_writers.py.)
        await here.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, %s), pg_current_xact_id()", WRITER_LOCK
        )
        appended = await test_store.append(
            "t-read", new_id(), "Note", [noted("y")], command_id=uuid.uuid4()
        )
        assert await read_everything(test_store, start) == []
        await here.rollback()
    assert [e.event_id for e in await read_everything(test_store, start)] == list(
        appended.event_ids
    )
