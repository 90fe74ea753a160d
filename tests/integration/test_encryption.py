"""Per-tenant payload encryption and crypto-shredding against PostgreSQL (issue 14, §4)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from acci.activities.command_activities import parse
from acci.activities.command_handler import CommandHandler
from acci.activities.errors import application_error
from acci.activities.models import CommandInput
from acci.domain import Tenant
from acci.eventstore.backup.export import create_backup
from acci.eventstore.encryption import PayloadEncryption
from acci.eventstore.errors import CiphertextError, TenantKeyShreddedError
from acci.eventstore.keyring import KeyRing
from acci.eventstore.keys import LocalKeyWrapper, master_key_bytes, new_master_key
from acci.eventstore.loading import read_tail
from acci.eventstore.records import START, RecordedEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.eventstore.tenant_scope import set_tenant
from acci.readmodels.errors import ProjectionError
from acci.readmodels.runner import ProjectionRunner
from acci.workers.urls import app_database_url
from tests.integration import events
from tests.integration.cli_process import acci
from tests.integration.projection_support import FlakySkip, create_seen_table, seen

K1 = new_master_key()


def keyring(
    pool: AsyncConnectionPool, key: str = K1, key_id: str = "k1", **previous: str
) -> KeyRing:
    old = {i: master_key_bytes(k) for i, k in previous.items()}
    return KeyRing(pool, LocalKeyWrapper(key_id, master_key_bytes(key), previous=old))


def sealing(
    pool: AsyncConnectionPool, ring: KeyRing | None = None, **options: object
) -> EventStore:
    encryption = PayloadEncryption(ring or keyring(pool), encrypt=True, **options)  # type: ignore[arg-type]
    return EventStore(pool, registry=events.registry, encryption=encryption)


def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def stored(pool: AsyncConnectionPool, tenant_id: str) -> list[tuple[object, ...]]:
    """The tenant's rows as PostgreSQL holds them (data as text), in stream order."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_id, sequence_number, global_position, transaction_id::text, data::text,"
            " metadata::text, event_type FROM event_store.events WHERE tenant_id = %s"
            " ORDER BY sequence_number",
            (tenant_id,),
        )
        return await cur.fetchall()


def _unzipped(folder: Path) -> bytes:
    """Every backup file's rows, as written (binary COPY)."""
    return b"".join(gzip.decompress(p.read_bytes()) for p in folder.rglob("*.copy.gz"))


async def everything(store: EventStore) -> list[RecordedEvent]:
    found, after = [], START
    while page := await store.read_all(after, limit=500):
        found += page
        after = page[-1].position
    return found


async def test_sealed_data_is_ciphertext_in_the_table_and_plaintext_on_every_read_path(
    pool: AsyncConnectionPool,
) -> None:
    store, t = sealing(pool), tenant()
    await store.append(t, "a1", "Note", [events.noted("secret-alpha")], command_id=uuid.uuid4())
    rows = await stored(pool, t)
    assert len(rows) == 1 and "secret-alpha" not in str(rows) and '"$enc"' in str(rows[0][4])
    assert '"Noted"' in str(rows) or rows[0][6] == "Noted"  # the envelope stays clear

    assert [e.data for e in await store.read_stream(t, "a1")] == [{"text": "secret-alpha"}]
    assert [e.data for e in await store.read_all(tenant_id=t)] == [{"text": "secret-alpha"}]
    tail = await read_tail(pool, t, "a1", "Note", schema_version=None, encryption=store.encryption)
    assert [json.loads(row[3]) for row in tail.events()] == [{"text": "secret-alpha"}]

    snapshots = SnapshotStore(pool, encryption=store.encryption)
    await snapshots.save(t, "a1", "Note", version=1, schema_version=1, state={"s": "secret-beta"})
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT state::text FROM snapshots.aggregate_snapshots WHERE tenant_id = %s", (t,)
        )
        assert "secret-beta" not in str(await cur.fetchall())
    snapshot = await snapshots.load(t, "a1", "Note", schema_version=1)
    assert snapshot is not None and snapshot.state == {"s": "secret-beta"}
    tail = await read_tail(pool, t, "a1", "Note", schema_version=1, encryption=store.encryption)
    assert tail.snapshot_state == {"s": "secret-beta"}


async def test_a_store_with_encryption_off_writes_clear_and_reads_a_mixed_stream(
    pool: AsyncConnectionPool,
) -> None:
    ring, t = keyring(pool), tenant()
    clear = EventStore(pool, registry=events.registry, encryption=PayloadEncryption(ring))
    await clear.append(t, "a1", "Note", [events.noted("in-clear")], command_id=uuid.uuid4())
    await sealing(pool, ring).append(t, "a1", "Note", [events.counted(7)], command_id=uuid.uuid4())
    rows = await stored(pool, t)
    assert "in-clear" in str(rows[0][4]) and '"$enc"' in str(rows[1][4])
    read = [e.data for e in await clear.read_stream(t, "a1")]
    assert read == [{"text": "in-clear"}, {"value": 7}]


async def test_a_changed_or_moved_ciphertext_is_a_typed_error(pool: AsyncConnectionPool) -> None:
    store, t = sealing(pool), tenant()
    await store.append(
        t, "a1", "Note", [events.noted("one"), events.noted("two")], command_id=uuid.uuid4()
    )
    first, second = await stored(pool, t)
    move = "UPDATE event_store.events SET data = %s::jsonb WHERE tenant_id = %s AND event_id = %s"
    async with pool.connection() as conn:
        await conn.execute(move, (first[4], t, second[0]))
    with pytest.raises(CiphertextError, match="moved from another row"):
        await store.read_stream(t, "a1")
    async with pool.connection() as conn:  # put it back: read_all reads every tenant
        await conn.execute(move, (second[4], t, second[0]))
    assert len(await store.read_stream(t, "a1")) == 2


async def test_a_changed_ciphertext_fails_its_event_in_a_projection_and_is_parked(
    pool: AsyncConnectionPool,
) -> None:
    """One damaged event does not stall the projections for ever: it is that event's failure,
    retried and then parked as any other, and the events after it are applied."""
    await create_seen_table(pool)
    store, t = sealing(pool), tenant()
    await store.append(
        t, "a1", "Note", [events.noted("one"), events.noted("two")], command_id=uuid.uuid4()
    )
    await store.append(t, "a1", "Note", [events.noted("three")], command_id=uuid.uuid4())
    first, second, third = await stored(pool, t)
    move = "UPDATE event_store.events SET data = %s::jsonb WHERE tenant_id = %s AND event_id = %s"
    async with pool.connection() as conn:
        await conn.execute(move, (first[4], t, second[0]))
    projection = FlakySkip({t})
    projection.name = "flaky_damaged"  # type: ignore[misc]
    runner = ProjectionRunner(projection, store)
    try:
        report = await runner.catch_up()
        assert report.failure is not None and report.failure.event_id == second[0]
        assert report.failure.error.startswith(f"CiphertextError: stored event {second[0]}")
        assert await seen(pool, projection.name, t) == {first[0]: 1}

        parked = await runner.run_batch(park=second[0], attempts=3)
        assert parked.parked is not None and parked.parked.event_id == second[0]
        await runner.catch_up()
        assert await seen(pool, projection.name, t) == {first[0]: 1, third[0]: 1}
        (letter,) = [
            d
            for d in await runner.dead_letters.list(projection=projection.name)
            if d.tenant_id == t
        ]
        assert letter.event_id == second[0] and "CiphertextError" in letter.error
        # Reading the log goes on past it; reading its stream still names the damage.
        assert any(e.event_id == third[0] for e in await everything(store))
        with pytest.raises(CiphertextError):
            await store.read_stream(t, "a1")
    finally:
        async with pool.connection() as conn:  # put it back: read_all reads every tenant
            await conn.execute(move, (second[4], t, second[0]))


async def test_two_first_appends_at_once_create_one_key(pool: AsyncConnectionPool) -> None:
    t = tenant()
    stores = [sealing(pool, keyring(pool)) for _ in range(4)]  # each its own key cache
    await asyncio.gather(
        *(
            s.append(t, f"a{i}", "Note", [events.noted()], command_id=uuid.uuid4())
            for i, s in enumerate(stores)
        )
    )
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM event_store.tenant_keys WHERE tenant_id = %s", (t,)
        )
        assert (await cur.fetchone()) == (1,)
    assert len(await sealing(pool).read_all(tenant_id=t)) == 4


async def test_shred_makes_a_tenant_unreadable_and_leaves_the_log_and_other_tenants(
    pool: AsyncConnectionPool, database_url: str, tmp_path: Path
) -> None:
    ring = keyring(pool)
    store, gone, kept = sealing(pool, ring), tenant(), tenant()
    for t in (gone, kept):
        await store.append(
            t,
            "a1",
            "Note",
            [events.noted(f"{t}-one"), events.noted(f"{t}-two")],
            command_id=uuid.uuid4(),
        )
    await SnapshotStore(pool, encryption=store.encryption).save(
        gone, "a1", "Note", version=2, schema_version=1, state={"s": "gone-state"}
    )
    before = await stored(pool, gone), await stored(pool, kept)

    env = {
        **os.environ,
        "ACCI_DATABASE_URL": database_url,
        "ACCI_MASTER_KEY": K1,
        "ACCI_MASTER_KEY_ID": "k1",
    }
    # As a deployment's: the installed applications' read models too (a shred makes its rows
    # again, from nothing).
    assert (await asyncio.to_thread(acci, env, "db", "migrate")).returncode == 0
    refused = await asyncio.to_thread(acci, env, "tenant", "shred", "--tenant", gone)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    owner = await asyncio.to_thread(
        acci, env, "tenant", "shred", "--tenant", gone, "--yes", "--as", f"ann@{gone}:owner"
    )
    assert owner.returncode == 2
    assert "may not shred" in owner.stderr and "only a system administrator" in owner.stderr
    done = await asyncio.to_thread(acci, env, "tenant", "shred", "--tenant", gone, "--yes")
    assert done.returncode == 0, done.stderr
    assert f"tenant {gone}: data key version(s) 1 destroyed" in done.stdout

    # This process's key ring (no listener) still held the key: forgotten here as its TTL would
    # (a running worker is told at once: tests/workflows/test_shred_running_worker.py).
    ring.forget()
    with pytest.raises(TenantKeyShreddedError, match=gone):
        await store.read_stream(gone, "a1")
    with pytest.raises(TenantKeyShreddedError):
        await read_tail(pool, gone, "a1", "Note", schema_version=1, encryption=store.encryption)
    with pytest.raises(TenantKeyShreddedError):
        await SnapshotStore(pool, encryption=store.encryption).load(
            gone, "a1", "Note", schema_version=1
        )
    with pytest.raises(TenantKeyShreddedError):
        await store.append(gone, "a2", "Note", [events.noted()], command_id=uuid.uuid4())

    found = await everything(store)
    mine = [e for e in found if e.tenant_id == gone]
    assert len(mine) == 2 and not any(e.readable for e in mine)
    assert [e.data for e in found if e.tenant_id == kept] == [
        {"text": f"{kept}-one"},
        {"text": f"{kept}-two"},
    ]
    assert (await stored(pool, gone), await stored(pool, kept)) == before  # nothing rewritten

    backup = await create_backup(pool, tmp_path, tenant=gone)
    assert backup.tenants[gone].events == 2
    dumped = await asyncio.to_thread(_unzipped, tmp_path)
    assert b"$enc" in dumped and f"{gone}-one".encode() not in dumped
    assert b"gone-state" not in dumped


@pytest.mark.parametrize("policy", ["skip", "park"])
async def test_projections_skip_or_park_a_shredded_tenants_events(
    pool: AsyncConnectionPool, policy: str
) -> None:
    await create_seen_table(pool)
    ring = keyring(pool)
    store, gone, kept = sealing(pool, ring, shredded_events=policy), tenant(), tenant()
    for t in (gone, kept):
        await store.append(
            t, "a1", "Note", [events.noted(), events.noted()], command_id=uuid.uuid4()
        )
    await ring.shred(gone)

    projection = FlakySkip({gone, kept})
    projection.name = f"flaky_{policy}"  # type: ignore[misc]
    runner = ProjectionRunner(projection, store)
    report = await runner.catch_up()
    assert report.failure is None and not report.paused
    assert len(await seen(pool, projection.name, kept)) == 2
    assert await seen(pool, projection.name, gone) == {}
    parked = [
        d for d in await runner.dead_letters.list(projection=projection.name) if d.tenant_id == gone
    ]
    if policy == "park":
        assert len(parked) == 2 and all("TenantKeyShreddedError" in d.error for d in parked)
        # An operator's retry cannot bring it back (and reads nothing); a skip closes it.
        with pytest.raises(ProjectionError, match="TenantKeyShreddedError"):
            await runner.retry_dead_letter(parked[0].event_id)
        await runner.skip_dead_letter(parked[0].event_id)
        assert await seen(pool, projection.name, gone) == {}
    else:
        assert parked == []


async def test_rotation_rewraps_keys_so_the_old_master_key_is_no_longer_needed(
    pool: AsyncConnectionPool,
) -> None:
    old = new_master_key()
    t = tenant()
    await sealing(pool, keyring(pool, old, "r1")).append(
        t, "a1", "Note", [events.noted("rotated")], command_id=uuid.uuid4()
    )
    before = await stored(pool, t)
    new = new_master_key()
    # Every key of the database is re-wrapped (this module's other tests' are under k1).
    rotated = await keyring(pool, new, "r2", r1=old, k1=K1).rotate(batch=1)
    assert rotated >= 1
    status = await keyring(pool, new, "r2").status()
    assert status.to_rewrap == 0 and set(status.live) == {"r2"}
    only_new = sealing(pool, keyring(pool, new, "r2"))
    assert [e.data for e in await only_new.read_stream(t, "a1")] == [{"text": "rotated"}]
    assert await stored(pool, t) == before  # the events' bytes are untouched


async def test_as_acci_app_a_tenant_sees_and_writes_only_its_own_key_rows(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    a, b = tenant(), tenant()
    for t in (a, b):
        await sealing(pool).append(t, "a1", "Note", [events.noted()], command_id=uuid.uuid4())
    app_url = app_database_url(database_url, None)
    async with await psycopg.AsyncConnection.connect(app_url) as conn:
        async with conn.transaction():
            await set_tenant(conn, a)
            cur = await conn.execute("SELECT tenant_id FROM event_store.tenant_keys")
            assert {r[0] for r in await cur.fetchall()} == {a}
            cur = await conn.execute(
                "SELECT count(*) FROM event_store.tenant_keys WHERE tenant_id = %s", (b,)
            )
            assert await cur.fetchone() == (0,)
        # Another tenant's key row (refused by the policy), and no UPDATE or DELETE at all.
        for statement, params in (
            (
                "INSERT INTO event_store.tenant_keys (tenant_id, key_version, wrapped_key,"
                " master_key_id) VALUES (%s, 9, 'x', 'k1')",
                (b,),
            ),
            ("UPDATE event_store.tenant_keys SET wrapped_key = NULL", ()),
            ("DELETE FROM event_store.tenant_keys", ()),
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                async with conn.transaction():
                    await set_tenant(conn, a)
                    await conn.execute(statement, params)  # type: ignore[arg-type]
    # Without a tenant set, nothing at all.
    async with await psycopg.AsyncConnection.connect(app_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM event_store.tenant_keys")
        assert await cur.fetchone() == (0,)


async def test_the_command_path_as_acci_app_creates_and_reads_its_tenants_key(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    from acci.eventstore.db import create_pool

    t = tenant()
    async with create_pool(app_database_url(database_url, None), min_size=1, max_size=2) as app:
        ring = keyring(app)
        key = await ring.for_writing(t)
        assert (await keyring(app).for_reading(t, 1)).version == key.version == 1


async def test_a_command_on_a_shredded_tenant_fails_non_retryable_saying_why(
    pool: AsyncConnectionPool,
) -> None:
    ring = keyring(pool)
    encryption = PayloadEncryption(ring, encrypt=True)
    store = EventStore(pool, encryption=encryption)
    repository = AggregateRepository(store, SnapshotStore(pool, encryption=encryption))
    handler, t = CommandHandler(store, repository), tenant()

    async def send(command_type: str, **payload: Any) -> None:
        command = CommandInput(
            command_id=uuid.uuid4(), tenant_id=t, command_type=command_type, payload=payload
        )
        await handler.handle(t, parse(command), command_id=command.command_id)

    await send("CreateTenant", name="Secret Name Ltd")
    assert "Secret Name" not in str(await stored(pool, t))
    assert (await repository.load(Tenant, t, t)).state.name == "Secret Name Ltd"

    await ring.shred(t)
    with pytest.raises(TenantKeyShreddedError) as refused:
        await send("RenameTenant", name="Other")
    error = application_error(refused.value)
    assert error.non_retryable and error.type == "CommandValidationError"
    assert error.details[0]["error"] == "TenantKeyShreddedError"
    assert f"tenant {t!r} was shredded" in error.message
    assert len(await stored(pool, t)) == 1  # nothing written


async def test_a_shred_reaches_another_process_within_the_key_cache_ttl(
    pool: AsyncConnectionPool,
) -> None:
    now = [1_000.0]
    wrapper = LocalKeyWrapper("k1", master_key_bytes(K1))
    worker = KeyRing(pool, wrapper, cache_ttl=60, clock=lambda: now[0])  # another process's
    shredder = KeyRing(pool, wrapper)
    t = tenant()
    await sealing(pool, worker).append(t, "a1", "Note", [events.noted()], command_id=uuid.uuid4())
    await shredder.for_reading(t, 1)

    await shredder.shred(t)
    with pytest.raises(TenantKeyShreddedError):  # the shredding process: at once
        await shredder.for_reading(t, 1)
    now[0] += 59
    assert (await worker.for_reading(t, 1)).version == 1  # still cached
    now[0] += 2
    with pytest.raises(TenantKeyShreddedError):
        await worker.for_reading(t, 1)
