"""Old event versions are upcast on every read path; snapshots shortcut loads, never misread."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from psycopg_pool import AsyncConnectionPool

from acci.activities.command_handler import CommandHandler
from acci.domain import Tenant, User
from acci.domain.tenant_commands import CreateTenant, RenameTenant
from acci.domain.user_commands import AssignRole
from acci.eventstore.records import RecordedEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore

TENANT = "t-upcast"


async def store_v1_user_registered(
    store: EventStore, pool: AsyncConnectionPool, user_id: str
) -> None:
    """Write a UserRegistered event as version 1 of the code did (display name under ``name``)."""
    data = {"email": f"{user_id}@example.com", "name": "Old Style", "roles": ["member"]}
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, command_id)"
            " VALUES (gen_random_uuid(), %s, %s, 'User', 1, 'UserRegistered', 1, %s::jsonb,"
            " gen_random_uuid())",
            (TENANT, user_id, json.dumps(data)),
        )


async def test_a_v1_event_reads_as_v2_from_the_stream_the_global_order_and_a_load(
    store: EventStore, pool: AsyncConnectionPool, repository: AggregateRepository
) -> None:
    start = await store.head()
    await store_v1_user_registered(store, pool, "old-user")
    expected = {"email": "old-user@example.com", "display_name": "Old Style", "roles": ["member"]}

    (from_stream,) = await store.read_stream(TENANT, "old-user")
    assert (from_stream.event_version, from_stream.data) == (2, expected)

    # The gap-free horizon may hold a reader back for a moment on a busy server (a transaction
    # that ended while the reader looked counts as open): read as a tailing reader does.
    from_all: list[RecordedEvent] = []
    deadline = time.monotonic() + 30
    while not from_all and time.monotonic() < deadline:
        from_all = [
            e for e in await store.read_all(start, tenant_id=TENANT) if e.aggregate_id == "old-user"
        ]
        if not from_all:
            await asyncio.sleep(0.05)
    assert [(e.event_version, e.data) for e in from_all] == [(2, expected)]

    user = await repository.load(User, TENANT, "old-user")
    assert (user.version, user.state.display_name) == (1, "Old Style")

    # Deciding on top of the upcast state and appending works as for any other stream.
    handler = CommandHandler(store, repository)
    await handler.handle(
        TENANT, CreateTenant(tenant_id=TENANT, name="Upcast"), command_id=uuid.uuid4()
    )
    outcome = await handler.handle(
        TENANT, AssignRole(user_id="old-user", role="admin"), command_id=uuid.uuid4()
    )
    assert outcome.stream_version == 2
    # The stored v1 row itself is untouched: upcasting happens on read.
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_version, data FROM event_store.events"
            " WHERE tenant_id = %s AND aggregate_id = 'old-user' AND sequence_number = 1",
            (TENANT,),
        )
        assert await cur.fetchone() == (
            1,
            {"email": "old-user@example.com", "name": "Old Style", "roles": ["member"]},
        )


async def test_a_load_starts_from_the_snapshot_at_the_head(
    store: EventStore, pool: AsyncConnectionPool, repository: AggregateRepository
) -> None:
    handler = CommandHandler(store, repository)
    await handler.handle(
        "t-snap", CreateTenant(tenant_id="t-snap", name="Zero"), command_id=uuid.uuid4()
    )
    for i in range(1, 6):
        await handler.handle(
            "t-snap", RenameTenant(tenant_id="t-snap", name=f"Name {i}"), command_id=uuid.uuid4()
        )
    tenant = await repository.load(Tenant, "t-snap", "t-snap")
    assert await repository.snapshot(tenant) is True
    assert await repository.snapshot(tenant) is False  # idempotent
    # Mark the stored snapshot so that a load which used it can be told from one that folded.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE snapshots.aggregate_snapshots"
            " SET state = jsonb_set(state, '{name}', '\"From snapshot\"')"
            " WHERE tenant_id = 't-snap'"
        )
    loaded = await repository.load(Tenant, "t-snap", "t-snap")
    assert (loaded.version, loaded.state.name) == (6, "From snapshot")
    # Later events are folded on top of it.
    await handler.handle(
        "t-snap", RenameTenant(tenant_id="t-snap", name="Seven"), command_id=uuid.uuid4()
    )
    loaded = await repository.load(Tenant, "t-snap", "t-snap")
    assert (loaded.version, loaded.state.name) == (7, "Seven")
    # A load of an earlier version or a time ignores a snapshot above it.
    assert (await repository.load(Tenant, "t-snap", "t-snap", version=3)).state.name == "Name 2"
    assert (
        await repository.load(Tenant, "t-snap", "t-snap", use_snapshot=False)
    ).state.name == "Seven"


async def test_a_snapshot_of_an_older_state_schema_is_ignored(
    store: EventStore, snapshots: SnapshotStore, repository: AggregateRepository
) -> None:
    handler = CommandHandler(store, repository)
    await handler.handle(
        "t-snap2", CreateTenant(tenant_id="t-snap2", name="Real"), command_id=uuid.uuid4()
    )
    older = Tenant.state_schema_version + 1  # any other schema version is "not ours"
    await snapshots.save(
        "t-snap2",
        "t-snap2",
        "Tenant",
        version=1,
        schema_version=older,
        state={"shape": "from another schema", "would": "not validate"},
    )
    loaded = await repository.load(Tenant, "t-snap2", "t-snap2")
    assert (loaded.version, loaded.state.name) == (1, "Real")
    assert (
        await snapshots.load(
            "t-snap2", "t-snap2", "Tenant", schema_version=Tenant.state_schema_version
        )
        is None
    )


async def snapshot_versions(pool: AsyncConnectionPool, tenant: str) -> list[int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT sequence_number FROM snapshots.aggregate_snapshots WHERE tenant_id = %s"
            " ORDER BY sequence_number",
            (tenant,),
        )
        return [int(v) for (v,) in await cur.fetchall()]


async def test_a_command_whose_load_folded_a_long_tail_leaves_a_snapshot_behind(
    store: EventStore, snapshots: SnapshotStore, pool: AsyncConnectionPool
) -> None:
    """The snapshot policy on the command path: a load that folded ``snapshot_after`` events or
    more past the newest snapshot writes one of what it loaded, without the command waiting."""
    repository = AggregateRepository(store, snapshots, snapshot_after=5)
    handler = CommandHandler(store, repository)
    tenant = f"t-pol-{uuid.uuid4().hex[:8]}"
    await handler.handle(tenant, CreateTenant(tenant_id=tenant, name="N0"), command_id=uuid.uuid4())
    for i in range(1, 5):  # loads that fold 1..4 events: under the threshold
        await handler.handle(
            tenant, RenameTenant(tenant_id=tenant, name=f"N{i}"), command_id=uuid.uuid4()
        )
    await repository.drain()
    assert await snapshot_versions(pool, tenant) == []
    # This command's load folds 5 events: a snapshot of the state it loaded (version 5).
    await handler.handle(tenant, RenameTenant(tenant_id=tenant, name="N5"), command_id=uuid.uuid4())
    await repository.drain()
    assert await snapshot_versions(pool, tenant) == [5]
    # The next loads start there: one event folded, no new snapshot until 5 more.
    for i in range(6, 10):
        await handler.handle(
            tenant, RenameTenant(tenant_id=tenant, name=f"N{i}"), command_id=uuid.uuid4()
        )
    await repository.drain()
    assert await snapshot_versions(pool, tenant) == [5]
    loaded = await repository.load(Tenant, tenant, tenant)
    folded = await repository.load(Tenant, tenant, tenant, use_snapshot=False)
    assert (loaded.version, loaded.state) == (folded.version, folded.state) == (10, loaded.state)
    await repository.drain()
    assert await snapshot_versions(pool, tenant) == [5, 10]
    # A load of a past version never writes one (it folds from the start: 9 events).
    await repository.load(Tenant, tenant, tenant, version=9)
    await repository.drain()
    assert await snapshot_versions(pool, tenant) == [5, 10]
