"""Backups and restores of the event store against PostgreSQL, byte for byte.

Full and incremental backups of every tenant and of one; restores of one tenant (to the chain's
end, to a position, to a time) that leave the other tenants alone and make the tenant's read
models again; a full restore into a new database; corrupted, truncated and unfinished backups
refused before anything changes; a command the restore removed refused when sent again.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.activities.command_activities import parse
from acci.activities.command_handler import CommandHandler
from acci.activities.models import CommandInput
from acci.eventstore.backup.catalog import apply_retention, list_backups
from acci.eventstore.backup.export import create_backup
from acci.eventstore.backup.manifest import (
    BackupError,
    BackupNotFoundError,
    CorruptBackupError,
    Manifest,
    backup_folder,
)
from acci.eventstore.backup.restore import (
    PointInTime,
    begin_writing,
    load_chain,
    restore_chain,
    stage,
    verify_files,
)
from acci.eventstore.db import create_pool, ensure_database
from acci.eventstore.errors import CommandRemovedByRestoreError
from acci.eventstore.records import NewEvent, Position
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.schema import prepare_database
from acci.readmodels.tenant_refresh import refresh_tenant
from tests.conftest import database_url_for, drop_database
from tests.integration.projection_support import tenancy_projections
from tests.integration.test_projections import new_tenant, send, visible

EVENTS = (
    "SELECT global_position, transaction_id, sequence_number, created_at, event_id, command_id,"
    " event_version, version, tenant_id, aggregate_type, aggregate_id, event_type, data::text,"
    " metadata::text FROM event_store.events {} ORDER BY transaction_id, global_position"
)


@pytest.fixture(scope="module")
def handler(store: EventStore, repository: AggregateRepository) -> CommandHandler:
    return CommandHandler(store, repository)


async def rows(pool: AsyncConnectionPool, tenant: str | None = None) -> list[tuple[Any, ...]]:
    where = sql.SQL("WHERE tenant_id = %s") if tenant else sql.SQL("")
    async with pool.connection() as conn:
        cur = await conn.execute(sql.SQL(EVENTS).format(where), (tenant,) if tenant else ())
        return await cur.fetchall()


async def read_model_rows(pool: AsyncConnectionPool, tenant: str) -> dict[str, list[Any]]:
    out = {}
    async with pool.connection() as conn:
        for table in ("tenants", "users", "tenant_activity"):
            cur = await conn.execute(
                sql.SQL("SELECT * FROM read_models.{} WHERE tenant_id = %s ORDER BY 1, 2").format(
                    sql.Identifier(table)
                ),
                (tenant,),
            )
            out[table] = await cur.fetchall()
    return out


async def busy_tenant(handler: CommandHandler, store: EventStore, users: int = 3) -> str:
    tenant = new_tenant("bk")
    await send(handler, tenant, "CreateTenant", name="Backed Up")
    for i in range(users):
        await send(
            handler,
            tenant,
            "RegisterUser",
            user_id=f"u{i}",
            email=f"{i}@x.io",
            display_name="U",
            roles=["member"],
        )
    await visible(store)
    return tenant


async def catch_up(store: EventStore) -> None:
    await visible(store)
    for projection in tenancy_projections():
        report = await ProjectionRunner(projection, store).catch_up()
        assert report.caught_up, report


async def restore_tenant(
    pool: AsyncConnectionPool,
    store: EventStore,
    root: Path,
    backup: Manifest,
    tenant: str,
    until: PointInTime | None = None,
) -> None:
    chain = load_chain(root, backup.backup_id)
    verify_files(chain)
    async with pool.connection() as conn, conn.transaction():
        await restore_chain(
            conn,
            chain,
            until or PointInTime(),
            tenant=tenant,
            restore_id=f"test-{uuid.uuid4().hex[:6]}",
        )
        await refresh_tenant(conn, store, tenant, tenancy_projections())


@pytest_asyncio.fixture(scope="module")
async def other_database() -> AsyncIterator[str]:
    url = database_url_for(f"acci_t_backup_target_{uuid.uuid4().hex[:8]}")
    drop_database(url)
    yield url
    drop_database(url)


async def test_a_tenant_restored_to_its_backup_equals_it_and_the_others_are_untouched(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler, tmp_path: Path
) -> None:
    a, b = await busy_tenant(handler, store), await busy_tenant(handler, store)
    await catch_up(store)
    full = await create_backup(pool, tmp_path, tenant=a)
    assert full.kind == "full" and full.tenants[a].events == 7 and full.tenants[a].commands == 4
    assert set(full.tenants) == {a}
    backed_up, a_models = await rows(pool, a), await read_model_rows(pool, a)

    # Later: more for a (lost by the restore), and b goes on.
    await send(handler, a, "RenameTenant", name="Renamed")
    lost = uuid.uuid4()
    command = CommandInput(
        command_id=lost,
        tenant_id=a,
        command_type="AssignRole",
        payload={"user_id": "u0", "role": "admin"},
    )
    await handler.handle(a, parse(command), command_id=lost)
    await send(handler, b, "RenameTenant", name="B later")
    await catch_up(store)
    b_before, b_models = await rows(pool, b), await read_model_rows(pool, b)

    await restore_tenant(pool, store, tmp_path, full, a)
    assert await rows(pool, a) == backed_up  # ids, positions, data, metadata, times
    assert await read_model_rows(pool, a) == a_models
    assert await rows(pool, b) == b_before and await read_model_rows(pool, b) == b_models
    # The command whose events the restore removed is refused when sent again.
    with pytest.raises(CommandRemovedByRestoreError, match="was removed by restore"):
        await handler.handle(a, parse(command), command_id=lost)
    # Run twice: the same store.
    await restore_tenant(pool, store, tmp_path, full, a)
    assert await rows(pool, a) == backed_up
    await catch_up(store)
    assert await read_model_rows(pool, a) == a_models


async def test_a_tenant_the_store_has_no_events_of_gets_no_backup(
    pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    typo = f"typo-{uuid.uuid4().hex[:8]}"
    with pytest.raises(BackupError, match=f"tenant '{typo}' has no events in this store"):
        await create_backup(pool, tmp_path, tenant=typo)
    assert not os.listdir(tmp_path)  # no folder left behind


async def test_a_chain_restores_to_its_end_to_a_position_and_to_a_time(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler, tmp_path: Path
) -> None:
    a = await busy_tenant(handler, store, users=2)
    full = await create_backup(pool, tmp_path, tenant=a)
    at_full = await rows(pool, a)
    await send(handler, a, "RenameTenant", name="Second")
    await visible(store)
    middle = await rows(pool, a)
    incremental = await create_backup(pool, tmp_path, tenant=a, parent=full)
    assert incremental.kind == "incremental" and incremental.parent == full.backup_id
    assert incremental.after == full.checkpoint and incremental.tenants[a].events == 1
    await send(handler, a, "RenameTenant", name="Third")
    await visible(store)
    last = await create_backup(pool, tmp_path, tenant=a, parent=incremental)
    end = await rows(pool, a)
    await send(handler, a, "RenameTenant", name="Lost")  # after every backup

    await restore_tenant(pool, store, tmp_path, last, a)
    assert await rows(pool, a) == end
    await restore_tenant(
        pool, store, tmp_path, last, a, PointInTime(position=full.checkpoint_position)
    )
    assert await rows(pool, a) == at_full
    second_time = middle[-1][3]  # created_at of the "Second" rename
    await restore_tenant(pool, store, tmp_path, last, a, PointInTime(time=second_time))
    assert await rows(pool, a) == middle
    # A point before the tenant's first event would leave it with none: refused, unchanged.
    before_it = at_full[0][3] - timedelta(days=1)
    with pytest.raises(BackupError, match=f"the chain holds no event of tenant {a} up to"):
        await restore_tenant(pool, store, tmp_path, last, a, PointInTime(time=before_it))
    assert await rows(pool, a) == middle


async def test_a_full_restore_into_a_new_database_equals_the_store(
    pool: AsyncConnectionPool,
    store: EventStore,
    handler: CommandHandler,
    tmp_path: Path,
    other_database: str,
) -> None:
    await busy_tenant(handler, store)
    await visible(store)
    full = await create_backup(pool, tmp_path)
    assert full.tenant is None and full.events == len(await rows(pool))
    everything = await rows(pool)
    await ensure_database(other_database)
    async with create_pool(other_database, min_size=1, max_size=4) as target:
        await prepare_database(target)
        chain = load_chain(tmp_path, full.backup_id)
        verify_files(chain)
        async with target.connection() as conn, conn.transaction():
            staged = await restore_chain(conn, chain, PointInTime())
        assert staged.events == len(everything)
        assert await rows(target) == everything
        # New appends continue after the restored positions.
        restored = EventStore(target)
        tenant = everything[0][8]
        new = await busy_tenant(
            CommandHandler(restored, AggregateRepository(restored, None)), restored, 0
        )  # type: ignore[arg-type]
        assert (await rows(target, new))[0][0] > max(r[0] for r in everything)
        assert tenant


async def test_corrupted_truncated_and_unfinished_backups_are_refused_and_change_nothing(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler, tmp_path: Path
) -> None:
    a = await busy_tenant(handler, store)
    full = await create_backup(pool, tmp_path, tenant=a)
    folder = backup_folder(tmp_path, a, full.backup_id)
    events_file = folder / "events.copy.gz"
    original = events_file.read_bytes()
    before = await rows(pool, a)

    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    events_file.write_bytes(bytes(flipped))
    with pytest.raises(CorruptBackupError, match="does not match its SHA-256"):
        verify_files(load_chain(tmp_path, full.backup_id))
    events_file.write_bytes(original[:-10])
    with pytest.raises(CorruptBackupError, match="truncated"):
        verify_files(load_chain(tmp_path, full.backup_id))
    # Even past a check, staging refuses a file that does not decompress to its rows.
    with pytest.raises(CorruptBackupError):
        async with pool.connection() as conn, conn.transaction():
            await begin_writing(conn)
            await stage(conn, load_chain(tmp_path, full.backup_id), PointInTime())
    assert await rows(pool, a) == before

    events_file.write_bytes(original)
    (folder / "manifest.json").unlink()  # as a backup killed before its manifest
    with pytest.raises(BackupNotFoundError):
        load_chain(tmp_path, full.backup_id)
    assert await rows(pool, a) == before
    assert Position.parse(full.checkpoint) > Position(0, 0)


async def test_a_transaction_that_commits_late_during_a_backup_is_in_the_next_one_never_lost(
    pool: AsyncConnectionPool, store: EventStore, database_url: str, tmp_path: Path
) -> None:
    """The backup stops before a transaction still open (and everything after it); the next
    incremental backup holds it: a chain restores every event, none half-included or skipped."""
    tenant = new_tenant("late")
    created = {"name": "Late", "settings": {}}
    async with await psycopg.AsyncConnection.connect(database_url) as late:
        command_id = uuid.uuid4()
        # Begun (and given its transaction id) before the append below, committed after.
        await late.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, command_id)"
            " VALUES (%s, %s, %s, 'Tenant', 1, 'TenantCreated', 1, %s, %s)",
            (uuid.uuid5(command_id, "0"), tenant, tenant, json.dumps(created), command_id),
        )
        await store.append(
            tenant,
            "second",
            "Tenant",
            [NewEvent("TenantCreated", 1, created)],
            command_id=uuid.uuid4(),
        )
        first = await create_backup(pool, tmp_path, tenant=tenant)
        assert first.tenants == {}  # neither the open transaction nor what committed after it
        await late.commit()
    await visible(store)
    second = await create_backup(pool, tmp_path, tenant=tenant, parent=first)
    assert second.tenants[tenant].events == 2
    everything = await rows(pool, tenant)
    async with pool.connection() as conn, conn.transaction():
        await begin_writing(conn)
        await conn.execute("DELETE FROM event_store.events WHERE tenant_id = %s", (tenant,))
    assert await rows(pool, tenant) == []
    async with pool.connection() as conn, conn.transaction():
        chain = load_chain(tmp_path, second.backup_id)
        await restore_chain(conn, chain, PointInTime(), tenant=tenant, restore_id="late-test")
    assert await rows(pool, tenant) == everything


async def test_retention_deletes_whole_old_chains_and_stale_unfinished_backups_only(
    pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler, tmp_path: Path
) -> None:
    tenant = await busy_tenant(handler, store, users=1)
    made: list[Manifest] = []
    for full in (True, False, True, False, True):
        parent = None if full else made[-1]
        made.append(await create_backup(pool, tmp_path, tenant=tenant, parent=parent))
        await send(handler, tenant, "RenameTenant", name=f"n{len(made)}")
        await visible(store)
    scope = backup_folder(tmp_path, tenant, "x").parent
    unfinished_old, unfinished_new = scope / "old-unfinished", scope / "new-unfinished"
    unfinished_old.mkdir()
    unfinished_new.mkdir()
    os.utime(unfinished_old, (0, 0))
    deleted = apply_retention(tmp_path, keep=2)
    assert set(deleted) == {made[0].backup_id, made[1].backup_id, "old-unfinished"}
    kept = [s.manifest.backup_id for s in list_backups(tmp_path)]
    assert kept == [m.backup_id for m in made[2:]]
    assert unfinished_new.exists()
    # Every kept backup still restores: its chain is whole.
    for backup_id in kept:
        verify_files(load_chain(tmp_path, backup_id))


async def test_after_a_tenant_restore_the_next_backup_of_its_scope_is_full_and_restores_it(
    pool: AsyncConnectionPool,
    store: EventStore,
    handler: CommandHandler,
    tmp_path: Path,
    other_database: str,
) -> None:
    """A tenant restore puts events back at old positions and removes later ones, which an
    incremental backup (after its parent's checkpoint) could not see: the next one is full."""
    tenant = await busy_tenant(handler, store, users=1)
    full = await create_backup(pool, tmp_path, tenant=tenant)
    await send(handler, tenant, "RenameTenant", name="Removed by the restore")
    await visible(store)
    incremental = await create_backup(pool, tmp_path, tenant=tenant, parent=full)  # the rename
    assert incremental.kind == "incremental" and incremental.tenants[tenant].events == 1
    await restore_tenant(pool, store, tmp_path, full, tenant)  # the rename is gone
    after_restore = await rows(pool, tenant)
    after = await create_backup(pool, tmp_path, tenant=tenant, parent=incremental)
    assert after.kind == "full" and after.parent is None
    await drop_database_async(other_database)
    await ensure_database(other_database)
    async with create_pool(other_database, min_size=1, max_size=2) as target:
        await prepare_database(target)
        async with target.connection() as conn, conn.transaction():
            await restore_chain(conn, load_chain(tmp_path, after.backup_id), PointInTime())
        assert await rows(target, tenant) == after_restore


async def drop_database_async(url: str) -> None:
    await asyncio.to_thread(drop_database, url)
