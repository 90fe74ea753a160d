"""Versioned read models and the blue/green rebuild's steps, against PostgreSQL.

Tables an older ACCI made are adopted as version 1; a rebuild into version 2 fills its own
tables from position 0 while the live version serves, equals a fold of the store and the live
version, switches queries and the live projection atomically (a live batch that read the
checkpoint before the switch applies nothing), and leaves the old version to be dropped. A
rebuild whose projection has a bug is refused with the differing rows, the live version
untouched; a cancelled one leaves no tables behind.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.activities.command_handler import CommandHandler
from acci.eventstore.records import RecordedEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.readmodels.changes import Change
from acci.readmodels.checkpoints import CheckpointStore
from acci.readmodels.errors import ProjectionError, ReadModelError
from acci.readmodels.installed import read_model
from acci.readmodels.rebuild import Rebuild, retire
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.tenancy import tenant_activity
from acci.readmodels.tenancy.users import GetUser, UsersProjection, user
from acci.readmodels.versions import ReadModelVersionError, ensure_read_models
from tests.integration.test_projections import new_tenant, send, visible

USERS = read_model("users")


@pytest.fixture(scope="module")
def handler(store: EventStore, repository: AggregateRepository) -> CommandHandler:
    return CommandHandler(store, repository)


async def rows(pool: AsyncConnectionPool, table: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier("read_models", table))
        )
        return await cur.fetchall()


async def version_states(pool: AsyncConnectionPool, name: str) -> dict[int, str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT version, state FROM read_models.versions WHERE read_model = %s", (name,)
        )
        return dict(await cur.fetchall())


async def exists(pool: AsyncConnectionPool, table: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"read_models.{table}",))
        row = await cur.fetchone()
        return bool(row and row[0])


async def some_users(handler: CommandHandler, store: EventStore, n: int = 3) -> str:
    tenant = new_tenant("ver")
    await send(handler, tenant, "CreateTenant", name="Versions")
    for i in range(n):
        await send(
            handler, tenant, "RegisterUser", user_id=f"u{i}", email=f"{i}@x.io", display_name="U"
        )
        await send(handler, tenant, "AssignRole", user_id=f"u{i}", role="admin")
    await visible(store)
    return tenant


async def test_a_fresh_database_has_version_1_of_every_read_model_behind_its_stable_name(
    pool: AsyncConnectionPool,
) -> None:
    for name in ("tenants", "users", "tenant_activity"):
        assert await version_states(pool, name) == {1: "live"}
        assert await exists(pool, f"{name}_v1")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = 'read_models.users'::regclass"
        )
        assert await cur.fetchone() == ("v",)  # a view: queries read the live version through it


async def test_tables_an_older_acci_made_are_adopted_as_version_1_with_their_rows(
    pool: AsyncConnectionPool,
) -> None:
    """As a database migrated before versions existed has them: the stable name is a table."""
    model = tenant_activity.READ_MODEL
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("DROP VIEW read_models.tenant_activity")
        await conn.execute("ALTER TABLE read_models.tenant_activity_v1 RENAME TO tenant_activity")
        await conn.execute("DELETE FROM read_models.versions WHERE read_model = 'tenant_activity'")
        await conn.execute(
            "INSERT INTO read_models.tenant_activity VALUES ('t-old', 'TenantCreated', 7, now())"
        )
    await ensure_read_models(pool, [model])
    await ensure_read_models(pool, [model])  # twice is once
    assert await version_states(pool, "tenant_activity") == {1: "live"}
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_count FROM read_models.tenant_activity WHERE tenant_id = 't-old'"
        )
        assert await cur.fetchone() == (7,)
        await conn.execute("DELETE FROM read_models.tenant_activity WHERE tenant_id = 't-old'")


async def test_a_rebuild_equals_the_live_version_and_switches_queries_and_the_live_projection(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    live = ProjectionRunner(UsersProjection(), store)
    tenant = await some_users(handler, store)
    await live.catch_up()
    ask = user(pool)
    before = await ask(GetUser(tenant_id=tenant, user_id="u0"))

    rebuild = Rebuild(store, USERS, 2)
    await rebuild.start()
    assert await version_states(pool, "users") == {1: "live", 2: "building"}
    report = await rebuild.project(budget=30)
    assert report.caught_up and report.applied > 0
    # While it is built, queries read the live version.
    assert await ask(GetUser(tenant_id=tenant, user_id="u0")) == before
    fold = await rebuild.validate_fold()
    assert all(c.equal for c in fold) and fold[0].found_rows >= 3
    assert not await exists(pool, "users_v2_fold")  # the fold's scratch tables are dropped

    # A live batch that read the checkpoint before the switch applies nothing after it.
    stale = await live.checkpoints.get("users")
    switch = await rebuild.switch(grace=timedelta(hours=1))
    assert switch.switched and switch.retired == 1 and switch.comparisons
    assert all(c.equal for c in switch.comparisons)
    assert await version_states(pool, "users") == {1: "retired", 2: "live"}
    assert await rows(pool, "users") == await rows(pool, "users_v2") == await rows(pool, "users_v1")
    moved = await live.checkpoints.get("users")
    assert moved.version == 2 and stale.version == 1

    # New events go to version 2 only.
    await send(handler, tenant, "RegisterUser", user_id="late", email="l@x.io", display_name="L")
    await visible(store)
    await live.catch_up()
    late = await ask(GetUser(tenant_id=tenant, user_id="late"))
    assert late.email == "l@x.io"
    assert len(await rows(pool, "users_v2")) == len(await rows(pool, "users_v1")) + 1

    assert await retire(store, USERS, 1)
    assert not await exists(pool, "users_v1")
    assert await version_states(pool, "users") == {2: "live"}
    assert not await retire(store, USERS, 1)  # twice is once


class BuggyUsers(UsersProjection):
    """The users projection with a bug: it drops one role assignment in three."""

    seen: ClassVar[int] = 0

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        if event.event_type == "RoleAssigned":
            BuggyUsers.seen += 1
            if BuggyUsers.seen % 3 == 0:
                return []
        return super().handle_event(event)


async def test_a_rebuild_that_differs_from_the_live_version_is_refused_with_the_rows(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    await some_users(handler, store, n=6)
    await ProjectionRunner(UsersProjection(), store).catch_up()
    live = await CheckpointStore(pool).get("users")
    before = await rows(pool, "users")

    rebuild = Rebuild(store, USERS, live.version + 1, projection=BuggyUsers())
    await rebuild.start()
    await rebuild.project(budget=30)
    # The fold folds the same (buggy) projection: equal. The live version is where it shows.
    switch = await rebuild.switch(grace=timedelta(0))
    assert not switch.switched
    [users_table] = switch.comparisons
    assert not users_table.equal
    assert users_table.found_rows == users_table.expected_rows  # same rows, wrong roles
    assert 1 <= len(users_table.differences) <= 10
    first = users_table.differences[0]
    assert first.expected is not None and first.found is not None
    assert first.expected["roles"] != first.found["roles"]
    assert set(first.key) == {"tenant_id", "user_id"}
    # The live version is untouched and serving.
    assert await rows(pool, "users") == before
    assert (await CheckpointStore(pool).get("users")).version == live.version

    await rebuild.fail("differs")
    assert (await version_states(pool, "users"))[rebuild.version] == "failed"
    assert await rebuild.abandon()
    assert not await exists(pool, f"users_v{rebuild.version}")
    assert rebuild.version not in await version_states(pool, "users")
    # A runner of the dropped version does not start over (on another version's tables).
    with pytest.raises(ProjectionError, match="does not exist"):
        await rebuild.project(budget=5)


async def test_the_fold_finds_rows_the_engine_got_wrong(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    await some_users(handler, store)
    live = await CheckpointStore(pool).get("users")
    rebuild = Rebuild(store, USERS, live.version + 1)
    await rebuild.start()
    await rebuild.project(budget=30)
    table = f"users_v{rebuild.version}"
    async with pool.connection() as conn:  # as a double-applied or lost change would leave it
        await conn.execute(
            sql.SQL("UPDATE {} SET display_name = 'tampered' WHERE user_id = 'u1'").format(
                sql.Identifier("read_models", table)
            )
        )
    [checked] = await rebuild.validate_fold()
    assert not checked.equal
    assert checked.differences and all(
        d.found and d.found["display_name"] == "tampered" for d in checked.differences
    )
    assert await rebuild.abandon()


async def test_a_live_or_older_version_cannot_be_rebuilt(
    pool: AsyncConnectionPool, store: EventStore
) -> None:
    live = (await CheckpointStore(pool).get("users")).version
    with pytest.raises(ReadModelVersionError, match="is live"):
        await Rebuild(store, USERS, live).start()
    assert await exists(pool, f"users_v{live}")


async def test_a_rebuild_with_parked_events_skips_them_as_the_live_version_does(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    """tenant_activity skips an event it cannot apply: the rebuild parks it, the fold leaves
    it out, and the two agree."""
    await some_users(handler, store)
    model = tenant_activity.READ_MODEL
    version = (await CheckpointStore(pool).get("tenant_activity")).version + 1
    poisoned = uuid.uuid4()

    class Poisoned(tenant_activity.TenantActivityProjection):
        def handle_event(self, event: RecordedEvent) -> list[Change]:
            if event.event_id == poisoned:
                raise ValueError("poisoned")
            return super().handle_event(event)

    events = await store.read_all(limit=5)
    poisoned = events[2].event_id
    rebuild = Rebuild(store, model, version, projection=Poisoned())
    await rebuild.start()
    report = await rebuild.project(budget=30)
    assert report.failure is not None and report.failure.event_id == poisoned
    report = await rebuild.park(poisoned, attempts=3)
    assert not report.paused
    assert (await rebuild.project(budget=30)).caught_up
    assert await rebuild.parked() == {poisoned}
    assert all(c.equal for c in await rebuild.validate_fold())
    assert await rebuild.abandon()


async def test_a_retired_version_past_its_grace_period_is_dropped_at_the_next_start(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    """As when its rebuild was cancelled after the switch, or terminated, during the grace."""
    await some_users(handler, store)
    model = tenant_activity.READ_MODEL
    live = ProjectionRunner(model.projection(), store)
    await live.catch_up()
    old = (await CheckpointStore(pool).get("tenant_activity")).version
    rebuild = Rebuild(store, model, old + 1)
    await rebuild.start()
    await rebuild.project(budget=30)
    switch = await rebuild.switch(grace=timedelta(0))
    assert switch.switched and switch.retired == old
    assert await exists(pool, f"tenant_activity_v{old}")
    await ensure_read_models(pool, [model])
    assert not await exists(pool, f"tenant_activity_v{old}")
    assert await version_states(pool, "tenant_activity") == {old + 1: "live"}


async def test_a_version_whose_ddl_postgresql_refuses_is_named_and_leaves_nothing(
    pool: AsyncConnectionPool, store: EventStore
) -> None:
    # A typo in an application's SQL: the error names the read model and version, in one line.
    model = tenant_activity.READ_MODEL
    old = (await CheckpointStore(pool).get("tenant_activity")).version
    typo = {**model.ddl, old + 1: model.ddl_for(old).replace("NOT NULL", "NOT NUL", 1)}
    assert typo[old + 1] != model.ddl_for(old)
    broken = dataclasses.replace(model, ddl=typo)
    with pytest.raises(ReadModelError) as refused:
        await Rebuild(store, broken, old + 1).start()
    message = str(refused.value)
    assert message.startswith(
        f"read model 'tenant_activity': the DDL of its version {old + 1} was refused by"
        " PostgreSQL (42601): syntax error at or near"
    ), message
    assert "\n" not in message
    assert not await exists(pool, f"tenant_activity_v{old + 1}")
