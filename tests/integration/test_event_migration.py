"""Stored events rewritten to their current version: in place, once, validated, recorded.

Version 1 UserRegistered events are written straight into the store (as an older ACCI wrote
them), beside current ones across tenants; the store-side batch (eventstore/event_migration.py)
brings them to version 2 and keeps everything else about each row.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from acci.activities.command_handler import CommandHandler
from acci.domain.registry import registry
from acci.domain.tenant_commands import CreateTenant
from acci.domain.user_commands import AssignRole, RegisterUser
from acci.eventstore.errors import UnsupportedEventTypeError
from acci.eventstore.event_migration import (
    BatchOutcome,
    Cursor,
    EventMigrationError,
    MigrationRun,
    migrate_batch,
    recorded,
)
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.readmodels.runner import ProjectionRunner
from tests.integration.projection_support import read_model_rows, tenancy_projections
from tests.integration.test_projections import catch_up


def v1_data(user_id: str, *, roles: list[str] | None = None) -> dict[str, Any]:
    """UserRegistered data as version 1 stored it (display name under ``name``)."""
    return {
        "email": f"{user_id}@example.com",
        "name": f"Old {user_id}",
        "roles": ["member"] if roles is None else roles,
    }


async def store_v1(pool: AsyncConnectionPool, tenant: str, user_id: str, **kw: Any) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, metadata, command_id)"
            " VALUES (gen_random_uuid(), %s, %s, 'User', 1, 'UserRegistered', 1, %s::jsonb,"
            ' \'{"by": "v1"}\'::jsonb, gen_random_uuid())',
            (tenant, user_id, json.dumps(v1_data(user_id, **kw))),
        )


async def tenant_with_old_and_new_users(handler: CommandHandler, pool: AsyncConnectionPool) -> str:
    """A tenant with two v1 users (one with a later current event) and one current user."""
    tenant = f"mig-{uuid.uuid4().hex[:8]}"
    await handler.handle(
        tenant, CreateTenant(tenant_id=tenant, name="Mig"), command_id=uuid.uuid4()
    )
    await store_v1(pool, tenant, "old-1")
    await store_v1(pool, tenant, "old-2")
    await handler.handle(tenant, AssignRole(user_id="old-1", role="admin"), command_id=uuid.uuid4())
    register = RegisterUser(user_id="new-1", email="new-1@example.com", display_name="New")
    await handler.handle(tenant, register, command_id=uuid.uuid4())
    return tenant


async def rows_of(pool: AsyncConnectionPool, tenants: list[str]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT tenant_id, transaction_id, global_position, event_id, aggregate_id,"
            " aggregate_type, sequence_number, event_type, event_version, data, metadata,"
            " command_id, created_at FROM event_store.events WHERE tenant_id = ANY(%s)"
            " ORDER BY tenant_id, transaction_id, global_position",
            (tenants,),
        )
        return list(await cur.fetchall())


def a_run(**kw: Any) -> MigrationRun:
    return MigrationRun(
        migration_id=f"test-{uuid.uuid4().hex[:8]}",
        workflow_id="test",
        started_at=datetime.now(UTC),
        **kw,
    )


async def migrate_all(
    pool: AsyncConnectionPool, run: MigrationRun, *, scan: int = 3
) -> list[BatchOutcome]:
    """Every batch of the run, each after the cursor the one before it ended at."""
    outcomes: list[BatchOutcome] = []
    after: Cursor | None = None
    while True:
        outcome = await migrate_batch(pool, registry, run, after=after, scan=scan)
        outcomes.append(outcome)
        if outcome.next_after is None:
            return outcomes
        after = outcome.next_after


@pytest.fixture(scope="module")
def handler(store: EventStore, repository: AggregateRepository) -> CommandHandler:
    return CommandHandler(store, repository)


async def test_old_events_are_rewritten_in_place_and_recorded_and_a_second_run_changes_nothing(
    pool: AsyncConnectionPool, handler: CommandHandler
) -> None:
    tenants = sorted([await tenant_with_old_and_new_users(handler, pool) for _ in range(2)])
    before = await rows_of(pool, tenants)
    run = a_run()
    outcomes = await migrate_all(pool, run)
    assert sum(o.migrated for o in outcomes) == 4
    assert len(outcomes) > 2  # batches of 3 rows, resumed from each cursor

    after = await rows_of(pool, tenants)
    unchanged = [k for k in before[0] if k not in ("event_version", "data")]
    assert [{k: r[k] for k in unchanged} for r in after] == [
        {k: r[k] for k in unchanged} for r in before
    ]
    for old, new in zip(before, after, strict=True):
        if (old["event_type"], old["event_version"]) == ("UserRegistered", 1):
            expected = {**old["data"], "display_name": old["data"]["name"]}
            del expected["name"]
            assert (new["event_version"], new["data"]) == (2, expected)
        else:
            assert (new["event_version"], new["data"]) == (old["event_version"], old["data"])

    [step] = await recorded(pool, run.migration_id)
    assert (step["event_type"], step["from_version"], step["to_version"], step["count"]) == (
        "UserRegistered",
        1,
        2,
        4,
    )
    assert step["finished_at"] is not None and step["tenant_filter"] is None

    # A batch run again, and a whole second run: nothing changes, nothing is counted.
    again = await migrate_batch(pool, registry, run, after=None, scan=100_000)
    assert again.migrated == 0
    second = a_run()
    assert sum(o.migrated for o in await migrate_all(pool, second)) == 0
    assert await rows_of(pool, tenants) == after
    assert await recorded(pool, second.migration_id) == []
    assert [s["count"] for s in await recorded(pool, run.migration_id)] == [4]


async def test_tenant_and_type_filters_leave_everything_else_as_stored(
    pool: AsyncConnectionPool, handler: CommandHandler
) -> None:
    mine, other = [await tenant_with_old_and_new_users(handler, pool) for _ in range(2)]

    async def versions(tenant: str) -> list[int]:
        return sorted(
            r["event_version"]
            for r in await rows_of(pool, [tenant])
            if r["event_type"] == "UserRegistered"
        )

    # A type with no older versions migrates nothing; an unknown one is refused.
    assert (
        sum(o.migrated for o in await migrate_all(pool, a_run(event_types=("RoleAssigned",)))) == 0
    )
    with pytest.raises(UnsupportedEventTypeError, match="NoSuchEvent"):
        await migrate_batch(pool, registry, a_run(event_types=("NoSuchEvent",)), after=None, scan=5)
    assert await versions(mine) == await versions(other) == [1, 1, 2]

    run = a_run(tenant_id=mine, event_types=("UserRegistered",))
    outcomes = await migrate_all(pool, run, scan=2)
    assert sum(o.migrated for o in outcomes) == 2
    assert sum(o.scanned for o in outcomes) == len(await rows_of(pool, [mine]))  # its rows only
    assert await versions(mine) == [2, 2, 2]
    assert await versions(other) == [1, 1, 2]
    [step] = await recorded(pool, run.migration_id)
    assert (step["tenant_filter"], step["type_filter"], step["count"]) == (
        mine,
        ["UserRegistered"],
        2,
    )
    await migrate_all(pool, a_run(tenant_id=other))  # leave the store migrated for the others


async def test_an_event_that_does_not_validate_stops_its_batch_with_nothing_written(
    pool: AsyncConnectionPool, handler: CommandHandler
) -> None:
    tenant = await tenant_with_old_and_new_users(handler, pool)
    await store_v1(pool, tenant, "no-roles", roles=[])  # version 2 requires at least one role
    before = await rows_of(pool, [tenant])
    run = a_run(tenant_id=tenant)
    with pytest.raises(EventMigrationError) as raised:
        await migrate_batch(pool, registry, run, after=None, scan=100)
    bad = next(r for r in before if r["aggregate_id"] == "no-roles")
    assert raised.value.row.event_id == bad["event_id"]
    assert "roles" in str(raised.value) and str(bad["event_id"]) in str(raised.value)
    assert await rows_of(pool, [tenant]) == before  # old-1 and old-2 were in the batch too
    assert await recorded(pool, run.migration_id) == []
    async with pool.connection() as conn:  # repaired, so that later runs go through
        await conn.execute("DELETE FROM event_store.events WHERE event_id = %s", (bad["event_id"],))


async def test_read_models_rebuilt_after_the_migration_equal_those_before(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    tenants = [await tenant_with_old_and_new_users(handler, pool) for _ in range(3)]
    runners = [ProjectionRunner(p, store) for p in tenancy_projections()]
    await catch_up(runners, store)
    before = await read_model_rows(pool, tenants)
    assert {u["display_name"] for u in before["users"]} == {"Old old-1", "Old old-2", "New"}

    assert sum(o.migrated for o in await migrate_all(pool, a_run(), scan=50)) >= 6
    migrated = await rows_of(pool, tenants)
    assert {r["event_version"] for r in migrated if r["event_type"] == "UserRegistered"} == {2}
    for runner in runners:
        await runner.reset()
    await catch_up(runners, store)
    assert await read_model_rows(pool, tenants) == before
