"""`acci worker` killed (SIGKILL) in the middle of a backup and of a restore.

A backup killed before its manifest leaves a folder that is never listed or used; the retried
activity makes a complete backup. A restore killed in its transaction changed nothing; the
retried activity completes it, equal to the backup.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from acci.workers.settings import Settings
from tests.workflows.conftest import eventually
from tests.workflows.test_backup_workflows import a_tenant, acci, backup_settings, events
from tests.workflows.test_durability import WorkerProcess


@pytest.fixture(scope="module")
def settings(
    database_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    yield backup_settings(database_url, temporal_address, tmp_path_factory.mktemp("backups"))


@pytest.fixture
async def workers(settings: Settings, tmp_path: Path) -> AsyncIterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.stop()


async def new_worker(
    settings: Settings, tmp_path: Path, workers: list[WorkerProcess]
) -> WorkerProcess:
    worker = WorkerProcess(settings, settings.task_queue, tmp_path / "worker.log")
    await worker.start()
    workers.append(worker)
    return worker


async def holding(
    pool: AsyncConnectionPool,
    statement: sql.Composable,
    release: asyncio.Event,
    held: asyncio.Event,
) -> None:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(statement)
        held.set()
        await release.wait()


async def killed_waiting_on(
    table: str,
    worker: WorkerProcess,
    pool: AsyncConnectionPool,
    settings: Settings,
    command: list[str],
) -> str:
    """Hold ``table`` locked, start ``acci <command>`` (``--no-wait --json``), kill ``worker``
    once the job waits for the lock, then let go; the job's workflow id."""
    release, held = asyncio.Event(), asyncio.Event()
    statement = sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
        sql.Identifier(*table.split("."))
    )
    lock = asyncio.create_task(holding(pool, statement, release, held))
    await held.wait()
    _, out, _ = await acci(settings, *command)
    workflow_id = str(json.loads(out)["workflow_id"])
    await eventually(
        lambda: waiting_on_lock(pool, table), within=60, what=f"the job to wait for {table}"
    )
    worker.kill()
    release.set()
    await lock
    return workflow_id


async def waiting_on_lock(pool: AsyncConnectionPool, relation: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE NOT granted AND relation = %s::regclass)",
            (relation,),
        )
        row = await cur.fetchone()
        return bool(row and row[0])


async def test_a_backup_killed_before_its_manifest_is_never_listed_and_the_retry_completes(
    settings: Settings,
    pool: AsyncConnectionPool,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    first = await new_worker(settings, tmp_path, workers)
    tenant = await a_tenant(settings)
    # The backup writes its events file, then waits to read the commands: killed there.
    workflow_id = await killed_waiting_on(
        "event_store.commands",
        first,
        pool,
        settings,
        ["backup", "create", "--tenant", tenant, "--no-wait", "--json"],
    )
    unfinished = [p for p in (settings.backup_dir / f"tenant-{tenant}").iterdir()]
    assert len(unfinished) == 1 and not (unfinished[0] / "manifest.json").exists()
    _, out, _ = await acci(settings, "backup", "list", "--tenant", tenant, "--json")
    assert json.loads(out) == []

    await new_worker(settings, tmp_path, workers)
    result = await asyncio.wait_for(
        temporal_env.client.get_workflow_handle(workflow_id).result(), 120
    )
    assert result["kind"] == "full"
    _, out, _ = await acci(settings, "backup", "list", "--tenant", tenant, "--json")
    assert [b["backup_id"] for b in json.loads(out)] == [result["backup_id"]]
    await acci(settings, "backup", "verify", result["backup_id"])


async def test_a_restore_killed_in_its_transaction_is_retried_and_completes(
    settings: Settings,
    pool: AsyncConnectionPool,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    first = await new_worker(settings, tmp_path, workers)
    tenant = await a_tenant(settings)
    _, out, _ = await acci(settings, "backup", "create", "--tenant", tenant, "--full", "--json")
    backup: dict[str, Any] = json.loads(out)
    backed_up = await events(pool, tenant)
    await acci(settings, "tenant", "rename", "--tenant", tenant, "--name", "Later")
    changed = await events(pool, tenant)
    # The restore stages the chain, then waits to replace the tenant's events: killed there.
    workflow_id = await killed_waiting_on(
        "event_store.removed_commands",
        first,
        pool,
        settings,
        ["backup", "restore", backup["backup_id"], "--tenant", tenant, "--no-wait", "--json"],
    )
    assert await events(pool, tenant) == changed  # its transaction rolled back: nothing changed

    await new_worker(settings, tmp_path, workers)
    result = await asyncio.wait_for(
        temporal_env.client.get_workflow_handle(workflow_id).result(), 120
    )
    assert result["phase"] == "done"
    assert await events(pool, tenant) == backed_up
