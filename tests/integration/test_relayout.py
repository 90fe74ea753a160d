"""The upgrade from one partition per tenant to one table keyed by tenant (migration 008).

Each test builds a database as the earlier versions left it (migrations 001-007, a LIST partition
per tenant with the writer-lock trigger, events, commands and snapshots in them), then upgrades
it: in one go, killed mid-way and resumed, and with an old-version writer still appending.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from acci.eventstore.db import create_pool
from acci.eventstore.migrate import available_migrations, migrate
from acci.eventstore.records import START, NewEvent
from acci.eventstore.store import EventStore
from tests.conftest import database_url_for, drop_database

TENANTS = 12
EVENTS_PER_TENANT = 400
ALL_EVENTS = (
    "SELECT global_position, transaction_id, event_id, tenant_id, aggregate_id, aggregate_type,"
    " sequence_number, event_type, event_version, data, metadata, command_id, created_at, version"
    " FROM event_store.events ORDER BY transaction_id, global_position"
)

# How the earlier versions gave a tenant its partitions (eventstore/partitions.py, removed).
_OLD_PARTITION = """
CREATE TABLE event_store.{events} PARTITION OF event_store.events FOR VALUES IN ({tenant});
CREATE TRIGGER events_register_writer BEFORE INSERT ON event_store.{events}
    FOR EACH STATEMENT EXECUTE FUNCTION event_store.register_event_writer();
CREATE TABLE snapshots.{snapshots} PARTITION OF snapshots.aggregate_snapshots
    FOR VALUES IN ({tenant});
INSERT INTO event_store.tenants (tenant_id, events_partition, snapshots_partition)
    VALUES ({tenant}, {events_name}, {snapshots_name});
"""

# One command per event, as the earlier versions stored them; UserRegistered is a known type.
_OLD_EVENTS = """
WITH new AS (
    SELECT gen_random_uuid() AS command_id, gen_random_uuid() AS event_id, n
      FROM generate_series(1, %(count)s) AS n
), stored AS (
    INSERT INTO {partition} (global_position, event_id, tenant_id, aggregate_id, aggregate_type,
                             sequence_number, event_type, event_version, data, metadata,
                             command_id)
    SELECT nextval('event_store.events_global_position_seq'), event_id, %(tenant)s,
           'u-' || event_id, 'User', 1, 'UserRegistered', 2,
           jsonb_build_object('email', 'u' || n || '@example.com', 'display_name', 'U',
                              'roles', jsonb_build_array('member')),
           jsonb_build_object('correlation_id', command_id::text, 'command_type', 'RegisterUser'),
           command_id
      FROM new
    RETURNING command_id, event_id, tenant_id, aggregate_id
)
INSERT INTO event_store.commands
    (command_id, tenant_id, aggregate_type, aggregate_id, command_type, event_ids)
SELECT command_id, tenant_id, 'User', aggregate_id, 'RegisterUser', ARRAY[event_id] FROM stored
"""

# An upgrade from 007 applies 008 (the move) and every migration after it.
FROM_8 = [m.version for m in available_migrations() if m.version >= 8]


def tenant(i: int) -> str:
    return f"t-{i:03d}"


def old_partition(i: int) -> str:
    return f"events_t_{i:03d}"


@pytest.fixture
def old_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database on the earlier layout, with events, commands and snapshots in it."""
    name = f"acci_t_relayout_{os.getpid()}_{request.node.name[:20].lower()}"
    url = database_url_for("".join(c if c.isalnum() else "_" for c in name))
    drop_database(url)
    asyncio.run(_build_old_layout(url))
    yield url
    drop_database(url)


async def _build_old_layout(url: str) -> None:
    with psycopg.connect(database_url_for("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_dbname(url))))
    async with create_pool(url, min_size=1, max_size=2) as pool:
        await migrate(pool, up_to=7)
        async with pool.connection() as conn:
            for i in range(TENANTS):
                events, snaps = old_partition(i), f"aggregate_snapshots_t_{i:03d}"
                await conn.execute(
                    sql.SQL(_OLD_PARTITION).format(
                        events=sql.Identifier(events),
                        snapshots=sql.Identifier(snaps),
                        tenant=sql.Literal(tenant(i)),
                        events_name=sql.Literal(events),
                        snapshots_name=sql.Literal(snaps),
                    )
                )
                # Two transactions per tenant, so transaction ids interleave across tenants.
                for _ in range(2):
                    await insert_old_events(conn, i, EVENTS_PER_TENANT // 2)
                await conn.execute(
                    "INSERT INTO snapshots.aggregate_snapshots (snapshot_id, aggregate_id,"
                    " aggregate_type, sequence_number, schema_version, state, tenant_id)"
                    " VALUES (gen_random_uuid(), 'u-1', 'User', 1, 1, '{\"n\": 1}', %s)",
                    (tenant(i),),
                )


def _dbname(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])


async def insert_old_events(conn: psycopg.AsyncConnection[Any], i: int, count: int) -> None:
    """Append as an earlier version did: straight into the tenant's partition."""
    query = sql.SQL(_OLD_EVENTS).format(partition=sql.Identifier("event_store", old_partition(i)))
    await conn.execute(query, {"count": count, "tenant": tenant(i)})


async def all_rows(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(ALL_EVENTS)
    return await cur.fetchall()


async def snapshot_rows(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT snapshot_id, tenant_id, aggregate_id, aggregate_type, sequence_number,"
        " schema_version, state, metadata, created_at FROM snapshots.aggregate_snapshots"
        " ORDER BY tenant_id"
    )
    return await cur.fetchall()


@pytest_asyncio.fixture
async def conn(old_database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(old_database, autocommit=True) as conn:
        yield conn


async def assert_moved(
    url: str, events: list[tuple[Any, ...]], snapshots: list[tuple[Any, ...]]
) -> None:
    """Every row is in the new table with every column as it was, and the store works on it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        assert await all_rows(conn) == events
        assert await snapshot_rows(conn) == snapshots
        cur = await conn.execute(
            "SELECT c.relkind, (SELECT count(*) FROM pg_inherits WHERE inhparent = c.oid)"
            " FROM pg_class c WHERE c.oid IN"
            " ('event_store.events'::regclass, 'snapshots.aggregate_snapshots'::regclass)"
        )
        assert await cur.fetchall() == [("r", 0), ("r", 0)]
        cur = await conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace IN"
            " ('event_store'::regnamespace, 'snapshots'::regnamespace)"
            " AND (relname LIKE '%%partitioned%%' OR relname LIKE 'events_t_%%'"
            " OR relname LIKE '%%next%%' OR relname LIKE '%%relayout%%')"
        )
        assert await cur.fetchone() == (0,)  # the old layout and the move's tables are gone
        cur = await conn.execute(
            "SELECT version FROM public.acci_schema_migrations WHERE version = 8"
        )
        assert await cur.fetchone() == (8,)
    async with create_pool(url, min_size=1, max_size=4) as pool:
        store = EventStore(pool)
        read: list[Any] = []
        after = START
        while page := await store.read_all(after, limit=500):
            read.extend(page)
            after = page[-1].position
        assert [e.event_id for e in read] == [row[2] for row in events]
        # A command stored before the move is found again (by the transaction it recorded).
        first = read[len(read) // 2]
        again = await store.command_events(first.tenant_id, first.command_id)
        assert [e.event_id for e in again] == [first.event_id]
        # New appends continue the global order after everything moved.
        assert await store.head() == read[-1].position
        version = store.registry.current_version("UserRegistered")
        data = {"email": "new@example.com", "display_name": "New", "roles": ["member"]}
        result = await store.append(
            first.tenant_id,
            "u-new",
            "User",
            [NewEvent("UserRegistered", version, data)],
            command_id=uuid.uuid4(),
        )
        assert result.positions[0] > read[-1].position
        assert result.positions[0].global_position > max(row[0] for row in events)


async def test_an_upgrade_moves_every_event_commands_and_snapshots_intact(
    old_database: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    events, snapshots = await all_rows(conn), await snapshot_rows(conn)
    assert len(events) == TENANTS * EVENTS_PER_TENANT
    async with create_pool(old_database, min_size=1, max_size=2) as pool:
        applied = await migrate(pool)
        assert [m.version for m in applied] == FROM_8
        assert await migrate(pool) == []  # twice is once
    await assert_moved(old_database, events, snapshots)


_KILLABLE_MIGRATION = """
import asyncio, sys
from acci.eventstore import relayout
from acci.eventstore.db import create_pool
from acci.eventstore.migrate import migrate

relayout.BATCH = 20  # many small batches: a kill lands mid-way

async def main() -> None:
    async with create_pool(sys.argv[1], min_size=1, max_size=2) as pool:
        await migrate(pool)

asyncio.run(main())
"""


async def progress(conn: psycopg.AsyncConnection[Any]) -> int:
    """How many old partitions the move has started copying (-1: not begun)."""
    cur = await conn.execute("SELECT to_regclass('event_store.relayout_progress') IS NOT NULL")
    if await cur.fetchone() != (True,):
        return -1
    cur = await conn.execute("SELECT count(*) FROM event_store.relayout_progress")
    row = await cur.fetchone()
    return int(row[0]) if row else -1


async def test_an_upgrade_killed_mid_way_resumes_where_it_stopped(
    old_database: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    events, snapshots = await all_rows(conn), await snapshot_rows(conn)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLABLE_MIGRATION, old_database
    )
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while await progress(conn) < 3:  # three partitions under way, of twelve
            assert process.returncode is None, "the migration ended before it could be killed"
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        await asyncio.wait_for(process.wait(), 30)
    cur = await conn.execute("SELECT count(*) FROM event_store.events_next")
    copied = (await cur.fetchone() or (0,))[0]
    assert 0 < copied < len(events)  # killed mid-way, with part of the data moved
    cur = await conn.execute("SELECT count(*) FROM public.acci_schema_migrations WHERE version=8")
    assert await cur.fetchone() == (0,)
    async with create_pool(old_database, min_size=1, max_size=2) as pool:
        assert [m.version for m in await migrate(pool)] == FROM_8
    await assert_moved(old_database, events, snapshots)


async def test_an_old_writer_appending_during_the_upgrade_loses_nothing(
    old_database: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    """A process of the earlier version keeps appending into its tenants' partitions while the
    upgrade runs: what it committed is moved, and once the new table is in place its appends are
    refused, never written where nobody reads."""
    refused: list[str] = []
    appended = asyncio.Event()

    async def old_writer() -> None:
        async with await psycopg.AsyncConnection.connect(old_database, autocommit=True) as w:
            for n in range(100_000):
                try:
                    await insert_old_events(w, n % TENANTS, 5)
                except psycopg.Error as e:
                    refused.append(f"{e.sqlstate}: {e}")
                    return
                if n == 20:
                    appended.set()

    writer = asyncio.create_task(old_writer())
    await asyncio.wait_for(appended.wait(), 30)  # the old writer is under way before the move
    async with create_pool(old_database, min_size=1, max_size=2) as pool:
        assert [m.version for m in await migrate(pool)] == FROM_8
    await asyncio.wait_for(writer, 30)
    assert refused, "the old writer was never refused"
    # Refused by the move's trigger (ACW02) or, once dropped, by the missing partition.
    assert refused[0].startswith(("ACW02", "42P01")), refused[0]
    async with await psycopg.AsyncConnection.connect(old_database, autocommit=True) as after:
        cur = await after.execute("SELECT count(*) FROM event_store.commands")
        commands = (await cur.fetchone() or (0,))[0]
        cur = await after.execute("SELECT count(*) FROM event_store.events")
        moved = (await cur.fetchone() or (0,))[0]
    # Every command the old writer committed (one event each) has its event in the new table.
    assert moved == commands > TENANTS * EVENTS_PER_TENANT
