"""Backups and restores through the operator's doors: `acci backup`, the backup Schedules, and
`acci worker` processes killed in the middle of them.

A backup Schedule triggered through its handle makes a backup that verifies; a tenant restored
to a position by `acci backup restore` equals its backup while commands for other tenants run,
and the other tenants are untouched; a backup killed before its manifest is never listed, and
the retried one is; a restore killed mid-transaction is retried and completes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from acci.activities.backup_models import BACKUP_FULL_SCHEDULE
from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from tests.workflows.conftest import RABBITMQ_URL, eventually, worker_env
from tests.workflows.test_operator_doors import ACCI

EVENTS = sql.SQL(
    "SELECT global_position, transaction_id::text, event_id, sequence_number, data::text,"
    " metadata::text, created_at FROM event_store.events WHERE tenant_id = %s"
    " ORDER BY transaction_id, global_position"
)


def backup_settings(
    database_url: str, temporal_address: str, backup_dir: Path, **more: Any
) -> Settings:
    """A module's settings: its database, task queue, cache keys and backup folder."""
    return Settings(
        database_url=database_url,  # type: ignore[arg-type]
        temporal_address=temporal_address,
        task_queue=f"acci-backup-{uuid.uuid4().hex[:8]}",
        rabbitmq_url=RABBITMQ_URL,  # type: ignore[arg-type]
        cache_prefix=f"acci-test-{uuid.uuid4().hex[:12]}",
        metrics_port=0,
        backup_dir=backup_dir,
        **more,
    )


@pytest.fixture(scope="module")
def settings(
    database_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    yield backup_settings(
        database_url,
        temporal_address,
        tmp_path_factory.mktemp("backups"),
        backup_full_cron="0 3 1 1 *",  # only the test's triggers run them
        backup_incremental_interval_s=86_400,
    )


@pytest_asyncio.fixture(scope="module")
async def worker(settings: Settings, temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with running_worker(settings, temporal_env.client):
        yield temporal_env.client
    for schedule in (
        "acci-snapshots",
        "acci-backup-full",
        "acci-backup-incremental",
        "acci-verify",
    ):
        try:
            await temporal_env.client.get_schedule_handle(schedule).delete()
        except Exception:
            pass


async def acci(settings: Settings, *args: str, ok: bool = True) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        ACCI,
        *args,
        env={
            **worker_env(settings),
            "ACCI_BACKUP_FULL_CRON": settings.backup_full_cron,
            "ACCI_BACKUP_INCREMENTAL_INTERVAL_S": str(settings.backup_incremental_interval_s),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    if ok:
        assert process.returncode == 0, err.decode() + out.decode()
    return int(process.returncode or 0), out.decode(), err.decode()


async def events(pool: AsyncConnectionPool, tenant: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(EVENTS, (tenant,))
        return await cur.fetchall()


async def command(settings: Settings, tenant: str, *args: str) -> dict[str, Any]:
    _, out, _ = await acci(settings, *args, "--tenant", tenant, "--json")
    return dict(json.loads(out))


async def a_tenant(settings: Settings, users: int = 2) -> str:
    tenant = f"bk-{uuid.uuid4().hex[:8]}"
    await command(settings, tenant, "tenant", "create", "--name", "Backed")
    for i in range(users):
        await command(
            settings,
            tenant,
            "user",
            "register",
            f"u{i}",
            "--email",
            f"{i}@x.io",
            "--name",
            "U",
            "--role",
            "member",
        )
    return tenant


async def test_a_triggered_backup_schedule_makes_a_backup_that_verifies(
    worker: Client, settings: Settings
) -> None:
    await a_tenant(settings, users=1)
    _, out, _ = await acci(settings, "schedules", "apply")
    assert f"{BACKUP_FULL_SCHEDULE}: created" in out and "acci-backup-incremental: created" in out
    handle = worker.get_schedule_handle(BACKUP_FULL_SCHEDULE)
    await handle.trigger()

    async def listed() -> list[dict[str, Any]]:
        _, out, _ = await acci(settings, "backup", "list", "--json")
        return [b for b in json.loads(out) if b["kind"] == "full" and b["tenant"] is None]

    [backup] = await eventually(listed, within=60, what="the scheduled backup")
    _, out, _ = await acci(settings, "backup", "verify", backup["backup_id"], "--json")
    verified = json.loads(out)
    assert verified["events"] == sum(t["events"] for t in backup["tenants"].values()) > 0
    assert verified["chain"] == [backup["backup_id"]]


async def test_a_tenant_restored_to_a_position_while_others_work_equals_its_backup(
    worker: Client, settings: Settings, pool: AsyncConnectionPool, store: EventStore
) -> None:
    tenant, other = await a_tenant(settings), await a_tenant(settings)
    _, out, _ = await acci(settings, "backup", "create", "--tenant", tenant, "--full", "--json")
    full = json.loads(out)
    backed_up = await events(pool, tenant)
    await command(settings, tenant, "tenant", "rename", "--name", "After the backup")
    _, out, _ = await acci(settings, "backup", "create", "--tenant", tenant, "--json")
    incremental = json.loads(out)
    assert incremental["kind"] == "incremental" and incremental["parent"] == full["backup_id"]
    before_other = await events(pool, other)

    async def others_work() -> int:
        sent = 0
        for i in range(5):
            await command(
                settings,
                other,
                "user",
                "register",
                f"w{i}",
                "--email",
                f"w{i}@x.io",
                "--name",
                "W",
                "--role",
                "member",
            )
            sent += 1
        return sent

    working = asyncio.create_task(others_work())
    _, out, _ = await acci(
        settings,
        "backup",
        "restore",
        incremental["backup_id"],
        "--tenant",
        tenant,
        "--until-position",
        full["checkpoint"],
        "--json",
    )
    restored = json.loads(out)
    assert restored["phase"] == "done" and restored["chain"] == [
        full["backup_id"],
        incremental["backup_id"],
    ]
    assert await events(pool, tenant) == backed_up  # event ids, positions, data, metadata
    assert await working == 5
    after_other = await events(pool, other)
    assert after_other[: len(before_other)] == before_other and len(after_other) > len(before_other)
    # The tenant's read model is the backup's (the rename is gone), through the CLI.
    _, out, _ = await acci(settings, "tenant", "get", "--tenant", tenant, "--json")
    assert json.loads(out)["name"] == "Backed"


async def test_acci_verify_passes_a_sound_store_and_names_what_is_wrong_in_a_damaged_tenant(
    worker: Client, settings: Settings, pool: AsyncConnectionPool, store: EventStore
) -> None:
    sound, damaged = await a_tenant(settings), await a_tenant(settings, users=3)
    await command(settings, damaged, "tenant", "rename", "--name", "Damaged")
    head = await store.head()
    from acci.readmodels.consistency import wait_until_projected

    await wait_until_projected(pool, ("tenants", "users", "tenant_activity"), head, timeout=60)
    _, out, _ = await acci(settings, "verify", "--json")
    verified = json.loads(out)
    assert verified["passed"], verified
    assert {c["name"] for c in verified["checks"]} >= {
        "stream contiguity",
        "events decode and upcast",
        "read model users equals a fold",
    }

    async with pool.connection() as conn:  # three kinds of damage, in one tenant
        await conn.execute(  # a gap in the tenant's stream
            "DELETE FROM event_store.events WHERE tenant_id = %s AND aggregate_type = 'Tenant'"
            " AND sequence_number = 2",
            (damaged,),
        )
        await conn.execute(  # an event its type cannot read
            "UPDATE event_store.events SET data = '{\"bogus\": 1}' WHERE tenant_id = %s"
            " AND event_type = 'TenantRenamed'",
            (damaged,),
        )
        await conn.execute(  # a read-model row the events do not give
            "UPDATE read_models.users SET display_name = 'tampered' WHERE tenant_id = %s"
            " AND user_id = 'u2'",
            (damaged,),
        )
    code, out, _ = await acci(settings, "verify", "--tenant", damaged, ok=False)
    assert code == 1, out
    assert f"stream Tenant/{damaged} of tenant {damaged}: 4 events numbered 1..5" in out, out
    assert "(TenantRenamed v1) of tenant" in out and "old_name: Field required" in out, out
    assert "read model users equals a fold: 1 problem(s)" in out, out
    assert "'user_id': 'u2'" in out, out
    _, out, _ = await acci(settings, "verify", "--tenant", sound, "--json")
    assert json.loads(out)["passed"]


async def test_a_backup_of_a_tenant_with_no_events_is_refused_at_once_through_the_cli(
    worker: Client, settings: Settings
) -> None:
    typo = f"typo-{uuid.uuid4().hex[:8]}"
    code, out, err = await acci(settings, "backup", "create", "--tenant", typo, ok=False)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"error (backup): tenant '{typo}' has no events in this store: nothing to back up"
        " (is the name right?)"
    )


async def test_verifying_a_tenant_the_store_does_not_know_is_not_found_through_the_cli(
    worker: Client, settings: Settings
) -> None:
    typo = f"typo-{uuid.uuid4().hex[:8]}"
    code, out, err = await acci(settings, "verify", "--tenant", typo, ok=False)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"error (not_found): tenant '{typo}' has no events and no data key in this store:"
        " nothing to verify (is the name right?)"
    )
