"""Encrypted events restored into another database read again once their data keys are imported
(`acci keys export`, `acci keys import`); a shred stays a shred, and a key file that is malformed
or does not open with the configured master keys writes nothing."""

from __future__ import annotations

import asyncio
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
from acci.eventstore.backup.restore import PointInTime, load_chain, restore_chain
from acci.eventstore.db import create_pool, ensure_database
from acci.eventstore.encryption import PayloadEncryption
from acci.eventstore.errors import DataKeyUnavailableError, TenantKeyShreddedError
from acci.eventstore.keyring import KeyRing
from acci.eventstore.keys import LocalKeyWrapper, master_key_bytes, new_master_key
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.readmodels.schema import prepare_database
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
    exported = await asyncio.to_thread(acci, source_env, "keys", "export", "--file", str(keys_file))
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    text = keys_file.read_text()
    assert KEY not in text
    by_tenant = {k["tenant_id"]: k for k in json.loads(text)["keys"]}
    assert by_tenant[kept]["wrapped_key"] and by_tenant[gone]["wrapped_key"] is None
    again = await asyncio.to_thread(acci, source_env, "keys", "export", "--file", str(keys_file))
    assert again.returncode == 2 and "exists" in again.stderr
    assert json.loads(keys_file.read_text()) == json.loads(text)  # not overwritten

    # A full backup restored into a new database: the events are there, sealed, with no key.
    backup = await create_backup(pool, tmp_path / "backups")
    await ensure_database(target_url)
    async with create_pool(target_url, min_size=1, max_size=4) as target:
        await prepare_database(target)
        async with target.connection() as conn, conn.transaction():
            await restore_chain(
                conn, load_chain(tmp_path / "backups", backup.backup_id), PointInTime()
            )
        with pytest.raises(DataKeyUnavailableError):
            await encrypted_store(target).read_stream(kept, "u1")

        target_env = env_for(target_url)
        refusals = {
            "cannot be opened": (env_for(target_url, WRONG_KEY), str(keys_file)),
            "not an ACCI key export": (target_env, str(tmp_path / "bad.json")),
        }
        (tmp_path / "bad.json").write_text('{"format": "acci-tenant-keys", "keys": "none"}')
        for what, (env, path) in refusals.items():
            refused = await asyncio.to_thread(acci, env, "keys", "import", "--file", path)
            assert refused.returncode == 1, what
            assert refused.stderr.startswith("error (validation)"), refused.stderr
            assert what in refused.stderr
            assert await key_rows(target) == [], what
        not_admin = await asyncio.to_thread(
            acci,
            target_env,
            "keys",
            "import",
            "--file",
            str(keys_file),
            "--as",
            f"ann@{kept}:owner",
        )
        assert not_admin.returncode == 2 and await key_rows(target) == []

        imported = await asyncio.to_thread(
            acci, target_env, "keys", "import", "--file", str(keys_file)
        )
        assert imported.returncode == 0, imported.stderr
        assert "1 data key(s) and 1 shred(s) imported for 2 tenant(s); 0 already" in imported.stdout
        assert await key_rows(target) == await key_rows(pool)
        restored = await encrypted_store(target).read_stream(kept, "u1")
        assert [(e.event_id, e.data) for e in restored] == [(e.event_id, e.data) for e in source]
        with pytest.raises(TenantKeyShreddedError):
            await encrypted_store(target).read_stream(gone, "u1")

        # Twice: nothing more, and nothing replaced.
        twice = await asyncio.to_thread(
            acci, target_env, "keys", "import", "--file", str(keys_file)
        )
        assert twice.returncode == 0 and "0 data key(s) and 0 shred(s)" in twice.stdout
        assert "2 already here" in twice.stdout
