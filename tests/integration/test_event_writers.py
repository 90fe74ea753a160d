"""Readers are held back only by transactions that may still commit events (migration 005).

Every transaction that inserts events takes the writer lock before it has a transaction id; the
gap-free horizon leaves out open transactions seen running without it. A write transaction of
anything else in the database (a subscriber's inbox, a read-model write, another program) does
not delay read_all, the head or a projection; an open event-writing one does, and shows as a
stall in the lag, and nothing it commits late is passed over.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.errors import NotAnEventWriterError, translate
from acci.eventstore.global_order import WRITER_LOCK
from acci.eventstore.messaging.messages import ReceivedEvent
from acci.eventstore.messaging.publisher import EventPublisher
from acci.eventstore.messaging.subscriber import EventSubscriber
from acci.eventstore.records import Position, RecordedEvent, StreamAppend
from acci.eventstore.store import EventStore
from acci.readmodels.runner import ProjectionRunner
from tests.integration.conftest import count_rows
from tests.integration.events import noted
from tests.integration.projection_support import FlakyPause, create_seen_table, seen
from tests.workflows.conftest import eventually

AMQP_URL = os.environ.get("ACCI_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")

_PARENT = sql.Identifier("event_store", "events")


def insert_event(table: sql.Identifier = _PARENT) -> sql.Composed:
    """An event insert as another program would write it (tenant and stream as parameters)."""
    return sql.SQL(
        "INSERT INTO {} (event_id, tenant_id, aggregate_id, aggregate_type, sequence_number,"
        " event_type, event_version, data, command_id) VALUES (gen_random_uuid(), %s, %s, 'Note',"
        " 1, 'Noted', 1, '{{\"text\": \"raw\"}}', gen_random_uuid())"
    ).format(table)


def new_id(prefix: str = "w") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(scope="module")
async def side_table(pool: AsyncConnectionPool) -> str:
    """A table of the event-store database that is not the event store (another program's)."""
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE public.side_effects (id serial PRIMARY KEY, note text)")
    return "public.side_effects"


@pytest_asyncio.fixture
async def other_write(database_url: str, side_table: str) -> AsyncIterator[int]:
    """A transaction that wrote to another table of this database and stays open; its pid."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("INSERT INTO public.side_effects (note) VALUES ('held open')")
        cur = await conn.execute("SELECT pg_backend_pid(), pg_current_xact_id_if_assigned()")
        pid, xid = await cur.fetchone()  # type: ignore[misc]
        assert xid is not None  # a real write transaction, with an id, in readers' snapshots
        yield int(pid)
        await conn.rollback()


@pytest_asyncio.fixture
async def open_event_writer(
    test_store: EventStore, database_url: str
) -> AsyncIterator[tuple[psycopg.AsyncConnection[Any], str]]:
    """A transaction that inserted an event and has not committed; (connection, tenant)."""
    tenant = new_id("t-late")
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(insert_event(), (tenant, new_id()))
        yield conn, tenant
        await conn.rollback()


async def read_everything(store: EventStore, after: Position) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    while page := await store.read_all(after, limit=50):
        events.extend(page)
        after = page[-1].position
    return events


async def append_one(store: EventStore, tenant: str = "t-w") -> list[uuid.UUID]:
    result = await store.append(tenant, new_id(), "Note", [noted("x")], command_id=uuid.uuid4())
    return list(result.event_ids)


# -- the writer lock ------------------------------------------------------------------------


async def test_the_events_table_has_the_trigger(
    test_store: EventStore, pool: AsyncConnectionPool
) -> None:
    await append_one(test_store, new_id("t-new"))
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.relname FROM pg_class c"
            " WHERE c.oid = 'event_store.events'::regclass OR c.oid IN"
            " (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'event_store.events'::regclass)"
            " EXCEPT SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE t.tgname = 'events_register_writer'"
        )
        missing = await cur.fetchall()
    assert missing == []


async def test_an_append_takes_the_writer_lock_before_its_transaction_id(
    test_store: EventStore, pool: AsyncConnectionPool, database_url: str
) -> None:
    """The first nextval after a checkpoint writes WAL and so assigns the transaction id: an
    append statement calls it before it inserts a row, and the statement trigger still runs
    earlier (else it would refuse the append)."""
    tenant = new_id("t-lock")
    insert = insert_event()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("CHECKPOINT")
        async with conn.transaction(force_rollback=True):
            await conn.execute("SELECT nextval('event_store.events_global_position_seq')")
            cur = await conn.execute("SELECT pg_current_xact_id_if_assigned()")
            assert (await cur.fetchone()) != (None,)  # nextval gave the transaction its id...
            with pytest.raises(psycopg.Error) as refused:
                await conn.execute(insert, (tenant, new_id()))  # ...so an event is refused,
        assert isinstance(translate(refused.value), NotAnEventWriterError)
        await conn.execute("CHECKPOINT")
    # ... but the append's own nextval comes after its trigger: one statement in autocommit,
    # and a pipelined transaction of several, both go through.
    assert len(await append_one(test_store, tenant)) == 1
    batch = [
        StreamAppend(tenant, new_id(), "Note", (noted(str(i)),), uuid.uuid4(), -1) for i in range(3)
    ]
    assert len(await test_store.append_many(batch)) == 3
    # The lock is held until the transaction ends.
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        # No row at all: a statement trigger fires for the statement.
        await conn.execute(
            "INSERT INTO event_store.events OVERRIDING SYSTEM VALUE"
            " SELECT * FROM event_store.events LIMIT 0"
        )
        cur = await conn.execute("SELECT pg_backend_pid()")
        pid = (await cur.fetchone())[0]  # type: ignore[index]
        async with pool.connection() as look:
            cur = await look.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'"
                " AND classid = %s AND objid = %s AND objsubid = 2 AND granted",
                (pid, *WRITER_LOCK),
            )
            assert await cur.fetchone() == (1,)
        await conn.rollback()


@pytest.mark.usefixtures("side_table")
async def test_copy_into_the_events_table_registers_the_writer(
    test_store: EventStore, pool: AsyncConnectionPool, database_url: str
) -> None:
    tenant = new_id("t-copy")
    before = await count_rows(pool)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        columns = "event_id, tenant_id, aggregate_id, aggregate_type, sequence_number,"
        columns += " event_type, event_version, data, command_id"
        async with conn.cursor().copy(f"COPY event_store.events ({columns}) FROM STDIN") as copy:
            for i in range(3):
                await copy.write_row(
                    (uuid.uuid4(), tenant, "copied", "Note", i + 1, "Noted", 1, "{}", uuid.uuid4())
                )
        await conn.commit()
        # COPY after another write in the same transaction is refused like an INSERT.
        await conn.execute("INSERT INTO public.side_effects (note) VALUES ('first')")
        with pytest.raises(psycopg.Error) as refused:
            async with conn.cursor().copy(
                f"COPY event_store.events ({columns}) FROM STDIN"
            ) as copy:
                await copy.write_row(
                    (uuid.uuid4(), tenant, "copied", "Note", 4, "Noted", 1, "{}", uuid.uuid4())
                )
        assert isinstance(translate(refused.value), NotAnEventWriterError)
        await conn.rollback()
    assert await count_rows(pool) == before + 3


@pytest.mark.usefixtures("side_table")
async def test_a_transaction_that_wrote_elsewhere_first_cannot_append_events(
    test_store: EventStore, pool: AsyncConnectionPool, database_url: str
) -> None:
    tenant = new_id("t-mixed")
    table = _PARENT
    before = await count_rows(pool)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("INSERT INTO public.side_effects (note) VALUES ('first')")
        with pytest.raises(psycopg.Error) as refused:
            await conn.execute(insert_event(table), (tenant, new_id()))
        await conn.rollback()
    error = translate(refused.value)
    assert isinstance(error, NotAnEventWriterError)
    assert "already wrote something else cannot append events" in str(error)
    assert await count_rows(pool) == before


@pytest.mark.usefixtures("side_table")
async def test_a_writer_flag_left_in_the_session_does_not_pass_for_the_lock(
    test_store: EventStore, pool: AsyncConnectionPool, database_url: str
) -> None:
    """The trigger's 'already registered' flag names its transaction: a session-level value
    (SET, ALTER ROLE ... SET, PGOPTIONS) never lets an unregistered transaction append."""
    tenant = new_id("t-flag")
    before = await count_rows(pool)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("SET acci.event_writer = 'on'")
        await conn.commit()
        await conn.execute("INSERT INTO public.side_effects (note) VALUES ('first')")
        with pytest.raises(psycopg.Error) as refused:
            await conn.execute(insert_event(), (tenant, new_id()))
        await conn.rollback()
    assert isinstance(translate(refused.value), NotAnEventWriterError)
    assert await count_rows(pool) == before


# -- what holds readers back -------------------------------------------------------------


async def test_an_open_write_to_another_table_does_not_delay_readers_or_projections(
    test_store: EventStore, pool: AsyncConnectionPool, other_write: int
) -> None:
    await create_seen_table(pool)
    tenant = new_id("t-free")
    runner = ProjectionRunner(FlakyPause({tenant}), test_store)
    start = await test_store.readable_head()
    await runner.set_position(start)
    appended = await append_one(test_store, tenant) + await append_one(test_store, tenant)
    # While the other transaction stays open (the fixture holds it until the test ends):
    assert [e.event_id for e in await read_everything(test_store, start)] == appended
    assert await test_store.readable_head() == await test_store.head()
    report = await runner.catch_up()
    assert report.applied == 2 and report.caught_up
    assert await seen(pool, "flaky_pause", tenant) == dict.fromkeys(appended, 1)
    lag = await runner.lag()
    assert (lag.events, lag.stall) == (0, None)


async def test_an_open_event_writer_holds_readers_back_and_shows_as_a_stall(
    test_store: EventStore,
    pool: AsyncConnectionPool,
    open_event_writer: tuple[psycopg.AsyncConnection[Any], str],
) -> None:
    await create_seen_table(pool)
    late, tenant = open_event_writer
    runner = ProjectionRunner(FlakyPause({tenant}), test_store)
    start = await test_store.readable_head()
    await runner.set_position(start)
    appended = await append_one(test_store, tenant)
    # Held back, not passed over: the readers see nothing after the open writer.
    assert await read_everything(test_store, start) == []
    assert await test_store.readable_head() < await test_store.head()
    report = await runner.run_batches(wait_seconds=0.05)
    assert report.applied == 0 and report.caught_up  # nothing it can apply yet...
    assert report.lag.events == 1 and report.lag.head == await test_store.head()
    cur = await late.execute("SELECT pg_backend_pid()")
    pid = (await cur.fetchone())[0]  # type: ignore[index]
    assert report.lag.stall is not None and report.lag.stall.pid == pid  # ... and says why
    assert report.lag.stall.seconds > 0
    await late.commit()
    seen_after = await read_everything(test_store, start)
    assert [e.event_id for e in seen_after][1:] == appended  # the late event first, then ours
    report = await runner.run_batches(wait_seconds=0.05)
    assert report.applied == 2 and report.lag.stall is None and report.lag.events == 0


async def test_a_subscribers_inbox_transaction_does_not_delay_another_tenants_readers(
    test_store: EventStore, pool: AsyncConnectionPool, database_url: str
) -> None:
    """EventSubscriber holds its inbox row's transaction open while its handler runs."""
    exchange = f"acci.events.test-writers-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    in_handler, release = threading.Event(), threading.Event()

    def slow_handler(event: ReceivedEvent, conn: psycopg.Connection[Any]) -> None:
        in_handler.set()
        if not release.wait(30):
            raise TimeoutError("the test never released the handler")

    subscriber = EventSubscriber(
        AMQP_URL, database_url=database_url, subscriber=new_id("sub"), exchange=exchange
    )
    try:
        subscriber.subscribe(["Noted"])
        tenant = new_id("t-sub")
        await append_one(test_store, tenant)
        (event,) = await test_store.read_all(
            await _before_last(test_store), limit=1, tenant_id=tenant
        )
        with EventPublisher(AMQP_URL, exchange=exchange) as publisher:
            publisher.publish_event(event)
        consuming = asyncio.create_task(
            asyncio.to_thread(subscriber.consume, slow_handler, max_messages=1, idle_timeout=30)
        )
        await eventually(in_handler.is_set, within=15, what="the handler to start")
        # The inbox transaction is open (its row inserted, with an id) while another tenant's
        # command is appended and read.
        other = new_id("t-other")
        start = await test_store.readable_head()
        appended = await append_one(test_store, other)
        assert [e.event_id for e in await read_everything(test_store, start)] == appended
        release.set()
        assert await consuming == 1
    finally:
        release.set()
        subscriber.delete(dead_letters=True)
        subscriber.close()
        _delete_exchange(exchange)


async def _before_last(store: EventStore) -> Position:
    head = await store.head()
    return Position(head.transaction_id, head.global_position - 1)


def _delete_exchange(name: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.exchange_delete(name)
    channel.exchange_delete(f"{name}.dlx")
    connection.close()
