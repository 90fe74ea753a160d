"""The snapshot job on its Temporal Schedule: applied through `acci schedules`, triggered, done.

A real worker runs SnapshotWorkflow; the Schedule is created (and updated) from the settings;
triggering it through its handle snapshots the streams far past their newest snapshot, prunes
old ones, and leaves loads equal to a fold of the store.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from acci.activities.models import (
    SNAPSHOT_SCHEDULE_ID,
    SNAPSHOT_WORKFLOW,
    SnapshotJobInput,
    SnapshotJobStatus,
)
from acci.domain import Tenant
from acci.eventstore.records import NewEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from tests.workflows.conftest import RABBITMQ_URL, eventually, free_port, worker_env
from tests.workflows.test_durability import WorkerProcess
from tests.workflows.test_operator_doors import ACCI
from tests.workflows.test_projection_stall import scrape


@pytest.fixture(scope="module")
def settings(database_url: str, temporal_address: str) -> Settings:
    return Settings(
        database_url=database_url,  # type: ignore[arg-type]
        temporal_address=temporal_address,
        task_queue=f"acci-snap-{uuid.uuid4().hex[:8]}",
        rabbitmq_url=RABBITMQ_URL,  # type: ignore[arg-type]
        cache_prefix=f"acci-test-{uuid.uuid4().hex[:12]}",
        metrics_port=free_port(),
        snapshot_job_min_events=5,
        snapshot_keep=2,
        snapshot_schedule_interval_s=86_400,  # only the test's triggers run it
        snapshot_after_events=0,  # the command path's policy off: the job does the work
    )


@pytest_asyncio.fixture(scope="module")
async def worker(
    settings: Settings, temporal_env: WorkflowEnvironment, pool: AsyncConnectionPool
) -> AsyncIterator[Client]:
    async with running_worker(settings, temporal_env.client):
        yield temporal_env.client
    for schedule in (
        SNAPSHOT_SCHEDULE_ID,
        "acci-backup-full",
        "acci-backup-incremental",
        "acci-verify",
    ):
        try:
            await temporal_env.client.get_schedule_handle(schedule).delete()
        except Exception:
            pass


async def acci(settings: Settings, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        ACCI,
        *args,
        env={
            **worker_env(settings),
            "ACCI_SNAPSHOT_SCHEDULE_INTERVAL_S": str(settings.snapshot_schedule_interval_s),
            "ACCI_BACKUP_SCHEDULE_PAUSED": "true",  # this module runs the snapshot job only
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def tenant_with(store: EventStore, events: int) -> str:
    """A tenant whose stream holds ``events`` events (created, then renamed)."""
    tenant = f"snap-{uuid.uuid4().hex[:8]}"
    created = NewEvent(
        "TenantCreated", 1, {"name": "T0", "settings": {"max_users": 100, "features": {}}}
    )
    renames = [
        NewEvent("TenantRenamed", 1, {"old_name": f"T{i}", "new_name": f"T{i + 1}"})
        for i in range(events - 1)
    ]
    await store.append(tenant, tenant, "Tenant", [created, *renames], command_id=uuid.uuid4())
    return tenant


async def snapshot_versions(pool: AsyncConnectionPool, tenant: str) -> list[int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT sequence_number FROM snapshots.aggregate_snapshots WHERE tenant_id = %s"
            " ORDER BY sequence_number",
            (tenant,),
        )
        return [int(v) for (v,) in await cur.fetchall()]


async def run_job(client: Client) -> SnapshotJobStatus:
    """Trigger the Schedule once and wait for the run it starts to finish."""
    handle = client.get_schedule_handle(SNAPSHOT_SCHEDULE_ID)
    before = (await handle.describe()).info.num_actions
    await handle.trigger()

    async def started() -> Any:
        info = (await handle.describe()).info
        return info.num_actions > before and info.recent_actions[-1]

    action = await eventually(started, within=30, what="the triggered run to start")
    run = client.get_workflow_handle(action.action.workflow_id)
    result = await asyncio.wait_for(run.result(), 120)
    return SnapshotJobStatus.model_validate(result)


async def test_schedules_apply_creates_then_updates_and_list_shows_it(
    worker: Client, settings: Settings
) -> None:
    assert "created" in await acci(settings, "schedules", "apply")
    assert "updated" in await acci(settings, "schedules", "apply")
    listed = json.loads(await acci(settings, "schedules", "list", "--json"))
    [shown] = [s for s in listed if s["schedule_id"] == SNAPSHOT_SCHEDULE_ID]
    assert {s["schedule_id"] for s in listed} == {
        SNAPSHOT_SCHEDULE_ID,
        "acci-backup-full",
        "acci-backup-incremental",
        "acci-verify",
    }
    assert shown["schedule_id"] == SNAPSHOT_SCHEDULE_ID
    assert shown["exists"] and shown["every_seconds"] == [86_400] and not shown["paused"]
    # A cron schedule shows its expression (the server hands back the calendar it parsed).
    [full] = [s for s in listed if s["schedule_id"] == "acci-backup-full"]
    assert full["cron"] == [settings.backup_full_cron] == ["0 3 * * 0"], full
    text = await acci(settings, "schedules", "list")
    assert ", 0 3 * * 0 (UTC), next " in next(line for line in text.splitlines() if "full" in line)


async def test_a_triggered_run_snapshots_streams_far_behind_and_prunes_old_snapshots(
    worker: Client, settings: Settings, store: EventStore, pool: AsyncConnectionPool
) -> None:
    await acci(settings, "schedules", "apply")
    long, short = await tenant_with(store, 12), await tenant_with(store, 3)
    # A hot stream, snapshotted often on the command path: never 5 behind, but holding 4.
    hot = await tenant_with(store, 6)
    # Old snapshots of the long stream (versions 1, 2, 3): pruned down to the newest 2.
    snapshots = SnapshotStore(pool)
    for tenant, versions in ((long, (1, 2, 3)), (hot, (2, 3, 4, 5))):
        for version in versions:
            folded = await AggregateRepository(store, snapshots).load(
                Tenant, tenant, tenant, version=version
            )
            await snapshots.save(
                tenant,
                tenant,
                "Tenant",
                version=version,
                schema_version=Tenant.state_schema_version,
                state=folded.state_to_json(),
            )
    status = await run_job(worker)
    assert status.phase == "done" and status.written >= 1 and status.pruned >= 4
    assert await snapshot_versions(pool, long) == [3, 12]  # 12 - 3 >= 5: written at the head
    assert await snapshot_versions(pool, short) == []  # 3 events: under the threshold
    assert await snapshot_versions(pool, hot) == [4, 5]  # 1 behind: pruned, none written
    repository = AggregateRepository(store, snapshots)
    loaded = await repository.load(Tenant, long, long)
    folded = await repository.load(Tenant, long, long, use_snapshot=False)
    assert (loaded.version, loaded.state) == (folded.version, folded.state)
    metrics = scrape(settings)
    assert re.search(
        r'^acci_snapshots_written_total\{aggregate_type="Tenant"\} [1-9]', metrics, re.M
    )
    assert re.search(r"^acci_snapshot_job_last_success_timestamp_seconds\{", metrics, re.M)
    # Run again: nothing is far behind any more, nothing is written twice.
    again = await run_job(worker)
    assert await snapshot_versions(pool, long) == [3, 12]
    assert await snapshot_versions(pool, hot) == [4, 5]
    assert again.phase == "done" and again.scanned >= 2


async def test_a_worker_killed_mid_job_leaves_the_rest_to_the_next_one(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    store: EventStore,
    pool: AsyncConnectionPool,
    database_url: str,
    tmp_path: Path,
) -> None:
    """SIGKILL of an `acci worker` process in the middle of a job: a new worker on the same
    task queue finishes it from the batch that was running; every stream ends with one
    snapshot at its head, and loads equal a fold.

    The kill lands mid-job for certain: the test holds an uncommitted snapshot row of one stream
    in the middle of the scan, so the job's write of that snapshot waits on it."""
    tenants = sorted([await tenant_with(store, 8) for _ in range(30)])
    before, blocker = tenants[:15], tenants[15]
    queue = f"acci-snapkill-{uuid.uuid4().hex[:8]}"
    env = {"ACCI_SNAPSHOT_JOB_MIN_EVENTS": "5", "ACCI_METRICS_PORT": "0"}
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute(
            "INSERT INTO snapshots.aggregate_snapshots (snapshot_id, tenant_id, aggregate_id,"
            " aggregate_type, schema_version, sequence_number, state)"
            " VALUES (gen_random_uuid(), %s, %s, 'Tenant', %s, 8, '{}')",
            (blocker, blocker, Tenant.state_schema_version),
        )  # left uncommitted: the job's insert of the same key waits for this transaction
        first = WorkerProcess(settings, queue, tmp_path / "first.log")
        first._env.update(env)
        await first.start()
        job = await temporal_env.client.start_workflow(
            SNAPSHOT_WORKFLOW,
            SnapshotJobInput(streams_per_batch=5),
            id=f"snapshot-kill-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )

        async def reached_the_blocker() -> bool:
            return all([await snapshot_versions(pool, t) == [8] for t in before])

        await eventually(reached_the_blocker, within=60, what="the job to reach the held stream")
        first.kill()
        await holder.rollback()
    assert all([await snapshot_versions(pool, t) == [] for t in tenants[16:]])
    second = WorkerProcess(settings, queue, tmp_path / "second.log")
    second._env.update(env)
    await second.start()
    try:
        status = SnapshotJobStatus.model_validate(await asyncio.wait_for(job.result(), 120))
    finally:
        second.stop()
    assert status.phase == "done"
    for tenant in tenants:
        assert await snapshot_versions(pool, tenant) == [8], tenant
    repository = AggregateRepository(store, SnapshotStore(pool))
    loaded = await repository.load(Tenant, blocker, blocker)
    folded = await repository.load(Tenant, blocker, blocker, use_snapshot=False)
    assert (loaded.version, loaded.state) == (folded.version, folded.state)
