"""`acci migrate-events` through a real worker: stored events brought to their current version.

The CLI verb runs as a process and starts EventMigrationWorkflow; a second run changes nothing;
an event that does not validate is named and stops the run; an `acci worker` process killed in
the middle of a migration leaves the rest to a new worker, and every event is migrated once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from acci.activities.models import (
    EVENT_MIGRATION_WORKFLOW,
    EventMigrationInput,
    EventMigrationStatus,
)
from acci.eventstore.event_migration import recorded
from acci.workers.settings import Settings
from acci.workflows.event_migration import EventMigrationWorkflow
from tests.integration.test_event_migration import store_v1
from tests.workflows.conftest import eventually, worker_env
from tests.workflows.test_durability import WorkerProcess
from tests.workflows.test_operator_doors import ACCI


async def acci(settings: Settings, *args: str, status: int = 0) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        ACCI,
        *args,
        env=worker_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == status, (out.decode(), err.decode())
    return out.decode(), err.decode()


async def versions(pool: AsyncConnectionPool, tenants: list[str]) -> dict[str, int]:
    """Each tenant's UserRegistered version (one user each)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant_id, event_version FROM event_store.events"
            " WHERE tenant_id = ANY(%s) AND event_type = 'UserRegistered'",
            (tenants,),
        )
        return {str(t): int(v) for t, v in await cur.fetchall()}


async def old_tenants(pool: AsyncConnectionPool, count: int, prefix: str) -> list[str]:
    tenants = sorted(f"{prefix}-{uuid.uuid4().hex[:8]}" for _ in range(count))
    for tenant in tenants:
        await store_v1(pool, tenant, "old")
    return tenants


async def test_the_cli_migrates_prints_totals_and_a_second_run_changes_nothing(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    tenants = await old_tenants(pool, 5, "cli")
    out, _ = await acci(settings, "migrate-events", "--batch-size", "2", "--json")
    result = json.loads(out)
    assert (result["phase"], result["migrated"]) == ("done", 5)
    assert result["batches"] >= 3 and result["workflow_id"] == "event-migration:*:*"
    assert set((await versions(pool, tenants)).values()) == {2}
    [step] = await recorded(pool, result["migration_id"])
    assert (step["event_type"], step["count"], step["workflow_id"]) == (
        "UserRegistered",
        5,
        "event-migration:*:*",
    )
    assert step["finished_at"] is not None
    # The run replays deterministically from its recorded history.
    history = await worker.get_workflow_handle(result["workflow_id"]).fetch_history()
    replayer = Replayer(workflows=[EventMigrationWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)

    again, _ = await acci(settings, "migrate-events", "--type", "UserRegistered")
    assert again.startswith("migrated 0 event(s) of ")

    # One tenant only, by name.
    [mine, other] = await old_tenants(pool, 2, "one")
    text, _ = await acci(settings, "migrate-events", "--tenant", mine)
    assert text.startswith("migrated 1 event(s) of 1 stored"), text
    assert await versions(pool, [mine, other]) == {mine: 2, other: 1}
    await acci(settings, "migrate-events")


async def test_an_event_that_does_not_validate_is_named_and_stops_the_run(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    [tenant] = await old_tenants(pool, 1, "bad")
    await store_v1(pool, tenant, "no-roles", roles=[])
    _, err = await acci(settings, "migrate-events", "--tenant", tenant, status=1)
    assert err.startswith("error (validation): event ") and "cannot be migrated" in err, err
    assert "UserRegistered version 1" in err and tenant in err
    assert await versions(pool, [tenant]) == {tenant: 1}  # the good one was in the same batch
    _, usage = await acci(settings, "migrate-events", "--type", "NoSuchEvent", status=1)
    assert "unknown event type(s): NoSuchEvent" in usage
    async with pool.connection() as conn:
        await conn.execute(
            "DELETE FROM event_store.events WHERE tenant_id = %s AND aggregate_id = 'no-roles'",
            (tenant,),
        )
    await acci(settings, "migrate-events", "--tenant", tenant)  # the rest, once repaired


async def test_a_worker_killed_mid_migration_leaves_the_rest_to_a_new_one(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    pool: AsyncConnectionPool,
    database_url: str,
    tmp_path: Path,
) -> None:
    """SIGKILL of an `acci worker` process in the middle of a migration: a new worker on the same
    task queue finishes it from the batch that was running; each event is migrated (and counted)
    once.

    The kill lands mid-run for certain: the test holds a row lock on one old event in the middle
    of the scan, so the migration's update of it waits."""
    tenants = await old_tenants(pool, 20, "kill")
    blocker = tenants[10]
    queue = f"acci-migkill-{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute(
            "SELECT 1 FROM event_store.events WHERE tenant_id = %s FOR UPDATE", (blocker,)
        )  # left open: the migration's update of this row waits for this transaction
        first = WorkerProcess(settings, queue, tmp_path / "first.log")
        await first.start()
        job = await temporal_env.client.start_workflow(
            EVENT_MIGRATION_WORKFLOW,
            EventMigrationInput(tenant_id=None, events_per_batch=3),
            id=f"event-migration-kill-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )

        async def waiting_on_the_held_row() -> bool:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                    " AND query LIKE '%UPDATE event_store.events AS e%'"
                )
                row = await cur.fetchone()
                return bool(row and row[0])

        await eventually(waiting_on_the_held_row, within=60, what="the run to reach the held row")
        first.kill()
        await holder.rollback()
    # Batches of 3 rows: the held one's batch holds at most 2 on either side of it.
    assert set((await versions(pool, tenants[:8])).values()) == {2}
    assert set((await versions(pool, tenants[13:])).values()) == {1}
    second = WorkerProcess(settings, queue, tmp_path / "second.log")
    await second.start()
    try:
        raw: Any = await asyncio.wait_for(job.result(), 120)
    finally:
        second.stop()
    status = EventMigrationStatus.model_validate(raw)
    assert status.phase == "done" and status.migration_id is not None
    assert set((await versions(pool, tenants)).values()) == {2}
    [step] = await recorded(pool, status.migration_id)
    assert step["count"] == len(tenants)
