"""Encrypted events restored into another database read again once their data keys are imported
(`acci keys export`, `acci keys import`); a shred stays a shred, and a key file that is malformed
or does not open with the configured master keys writes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from acci.activities.command_activities import parse
from acci.activities.command_handler import CommandHandler
from acci.activities.models import CommandInput
from acci.eventstore.backup.export import create_backup
from acci.eventstore.backup.manifest import BackupError
from acci.eventstore.backup.restore import PointInTime, load_chain, restore_chain
from acci.eventstore.db import create_pool
from acci.eventstore.encryption import PayloadEncryption
from acci.eventstore.errors import DataKeyUnavailableError, TenantKeyShreddedError
from acci.eventstore.keyring import KeyRing
from acci.eventstore.keys import LocalKeyWrapper, master_key_bytes, new_master_key
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from tests.conftest import database_url_for, drop_database
from tests.integration.cli_process import acci

KEY, WRONG_KEY = new_master_key(), new_master_key()


def encrypted_store(pool: AsyncConnectionPool, key: str = KEY) -> EventStore:
    ring = KeyRing(pool, LocalKeyWrapper("k1", master_key_bytes(key)), cache_ttl=0)
    return EventStore(pool, encryption=PayloadEncryption(ring, encrypt=True))


def env_for(url: str, key: str = KEY) -> dict[str, str]:
    return {
        **os.environ,
        "ACCI_DATABASE_URL": url,
        "ACCI_MASTER_KEY": key,
        "ACCI_MASTER_KEY_ID": "k1",
    }


async def key_rows(pool: AsyncConnectionPool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant_id, key_version, wrapped_key, master_key_id, shredded_at IS NOT NULL"
            " FROM event_store.tenant_keys ORDER BY tenant_id, key_version"
        )
        return await cur.fetchall()


@pytest_asyncio.fixture(scope="module")
async def target_url() -> AsyncIterator[str]:
    url = database_url_for(f"acci_t_key_export_target_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(drop_database, url)
    yield url
    await asyncio.to_thread(drop_database, url)


async def keys_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(acci, env, "keys", *args)
    return done.returncode, done.stdout, done.stderr


async def test_a_restore_into_another_database_reads_once_the_keys_are_imported(
    pool: AsyncConnectionPool, database_url: str, target_url: str, tmp_path: Path
) -> None:
    store = encrypted_store(pool)
    encryption = store._encryption
    handler = CommandHandler(
        store, AggregateRepository(store, SnapshotStore(pool, encryption=encryption))
    )
    kept, gone = f"kept-{uuid.uuid4().hex[:8]}", f"gone-{uuid.uuid4().hex[:8]}"
    for tenant in (kept, gone):
        for command_type, payload in (
            ("CreateTenant", {"name": f"{tenant} Ltd"}),
            ("RegisterUser", {"user_id": "u1", "email": "ada@x.io", "display_name": "Ada"}),
        ):
            command = CommandInput(
                command_id=uuid.uuid4(),
                tenant_id=tenant,
                command_type=command_type,
                payload=payload,
            )
            await handler.handle(tenant, parse(command), command_id=command.command_id)
    source = await store.read_stream(kept, "u1")
    source_env = env_for(database_url)
    assert (await asyncio.to_thread(acci, source_env, "db", "migrate")).returncode == 0
    shred = await asyncio.to_thread(acci, source_env, "tenant", "shred", "--tenant", gone, "--yes")
    assert shred.returncode == 0, shred.stderr

    # The export: wrapped keys and the shred, in a new file only its owner reads.
    keys_file = tmp_path / "keys.json"
    status, _, err = await keys_cli(source_env, "export", "--file", str(keys_file))
    assert status == 0, err
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    text = keys_file.read_text()
    raw_master_key = master_key_bytes(KEY)
    for spelling in (KEY, raw_master_key.hex(), base64.b64encode(raw_master_key).decode()):
        assert spelling not in text
    by_tenant = {k["tenant_id"]: k for k in json.loads(text)["keys"]}
    assert by_tenant[kept]["wrapped_key"] and by_tenant[gone]["wrapped_key"] is None
    status, _, err = await keys_cli(source_env, "export", "--file", str(keys_file))
    assert status == 2 and "exists" in err
    assert keys_file.read_text() == text  # not overwritten
    nothing = tmp_path / "nothing.json"
    status, _, err = await keys_cli(
        source_env, "export", "--file", str(nothing), "--tenant", "nobody"
    )
    assert status == 1 and "no data keys of tenant 'nobody'" in err and not nothing.exists()
    status, _, err = await keys_cli(source_env, "export", "--file", str(tmp_path / "no" / "k.json"))
    assert status == 1 and err.startswith("error (validation): cannot create")

    # The target: migrated, its keys imported, then the backup restored (the restore checks
    # what it restored by reading it, which needs the keys).
    backup = await create_backup(pool, tmp_path / "backups")
    target_env = env_for(target_url)
    assert (await asyncio.to_thread(acci, target_env, "db", "migrate")).returncode == 0
    async with create_pool(target_url, min_size=1, max_size=4) as target:
        (tmp_path / "bad.json").write_text('{"format": "acci-tenant-keys", "keys": "none"}')
        refusals = {
            "cannot be opened": (env_for(target_url, WRONG_KEY), keys_file),
            "not an ACCI key export": (target_env, tmp_path / "bad.json"),
        }
        for what, (env, path) in refusals.items():
            status, _, err = await keys_cli(env, "import", "--file", str(path))
            assert (status, err.startswith("error (validation)")) == (1, True), err
            assert what in err and await key_rows(target) == [], what
        status, _, _ = await keys_cli(
            target_env, "import", "--file", str(keys_file), "--as", f"ann@{kept}:owner"
        )
        assert status == 2 and await key_rows(target) == []
        # A key of its own for the tenant (a first write before the import): the file's would
        # leave the restored events unreadable, so nothing is imported.
        await KeyRing(target, LocalKeyWrapper("k1", master_key_bytes(KEY))).for_writing(kept)
        status, _, err = await keys_cli(target_env, "import", "--file", str(keys_file))
        assert status == 1 and f"{kept} has another data key version 1 here" in err
        assert [r[0] for r in await key_rows(target)] == [kept]
        async with target.connection() as conn:
            await conn.execute("DELETE FROM event_store.tenant_keys WHERE tenant_id = %s", (kept,))
        # Restored before the keys, the sealed events could never be read: refused, and the
        # store stays empty for the restore to run once they are imported.
        with pytest.raises(BackupError, match="import the keys first"):
            async with target.connection() as conn, conn.transaction():
                chain = load_chain(tmp_path / "backups", backup.backup_id)
                await restore_chain(conn, chain, PointInTime())
        async with target.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM event_store.events")
            assert await cur.fetchone() == (0,)

        status, out, err = await keys_cli(target_env, "import", "--file", str(keys_file))
        assert status == 0, err
        assert "1 data key(s) and 1 shred(s) of 2 tenant(s) imported; 0 already" in out
        assert await key_rows(target) == await key_rows(pool)
        async with target.connection() as conn, conn.transaction():
            chain = load_chain(tmp_path / "backups", backup.backup_id)
            await restore_chain(conn, chain, PointInTime())
        restored = await encrypted_store(target).read_stream(kept, "u1")
        assert [(e.event_id, e.data) for e in restored] == [(e.event_id, e.data) for e in source]
        with pytest.raises(TenantKeyShreddedError):
            await encrypted_store(target).read_stream(gone, "u1")
        status, out, _ = await keys_cli(target_env, "import", "--file", str(keys_file))
        assert status == 0 and "0 data key(s) and 0 shred(s) of 0 tenant(s)" in out
        assert "2 already here" in out

        # Shredded at the source later: its newer export refuses to pass for the target's live
        # key (the operator shreds there too), and a shred in the target is never revived.
        shred = await asyncio.to_thread(
            acci, source_env, "tenant", "shred", "--tenant", kept, "--yes"
        )
        assert shred.returncode == 0, shred.stderr
        newer = tmp_path / "keys-after-shred.json"
        assert (await keys_cli(source_env, "export", "--file", str(newer)))[0] == 0
        before = await key_rows(target)
        status, _, err = await keys_cli(target_env, "import", "--file", str(newer))
        assert status == 1 and f"{kept} is shredded in the file but its key is live here" in err
        assert await key_rows(target) == before
        shred = await asyncio.to_thread(
            acci, target_env, "tenant", "shred", "--tenant", kept, "--yes"
        )
        assert shred.returncode == 0, shred.stderr
        status, out, _ = await keys_cli(target_env, "import", "--file", str(keys_file))
        assert status == 0 and "0 data key(s)" in out
        with pytest.raises(TenantKeyShreddedError):
            await encrypted_store(target).read_stream(kept, "u1")


async def test_no_new_key_is_made_for_a_tenant_whose_sealed_events_lost_theirs(
    pool: AsyncConnectionPool,
) -> None:
    tenant = f"lost-{uuid.uuid4().hex[:8]}"
    ring = KeyRing(pool, LocalKeyWrapper("k1", master_key_bytes(KEY)), cache_ttl=0)
    store = EventStore(pool, encryption=PayloadEncryption(ring, encrypt=True))
    handler = CommandHandler(store, AggregateRepository(store, None))
    created = CommandInput(
        command_id=uuid.uuid4(),
        tenant_id=tenant,
        command_type="CreateTenant",
        payload={"name": "L"},
    )
    await handler.handle(tenant, parse(created), command_id=created.command_id)
    # As after a restore whose keys were not imported: the events are sealed, the key is gone.
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM event_store.tenant_keys WHERE tenant_id = %s", (tenant,))
    renamed = CommandInput(
        command_id=uuid.uuid4(),
        tenant_id=tenant,
        command_type="RenameTenant",
        payload={"name": "M"},
    )
    with pytest.raises(DataKeyUnavailableError, match="acci keys import"):
        await handler.handle(tenant, parse(renamed), command_id=renamed.command_id)
    with pytest.raises(DataKeyUnavailableError, match="acci keys import"):
        await ring.for_writing(tenant)  # a first write of a new aggregate would ask for one
    assert [r for r in await key_rows(pool) if r[0] == tenant] == []
    # A tenant with no sealed events gets its first key as before.
    fresh = f"fresh-{uuid.uuid4().hex[:8]}"
    assert (await ring.for_writing(fresh)).version == 1
