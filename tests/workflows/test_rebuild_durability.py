"""A worker killed (SIGKILL) in the middle of a read-model rebuild: the rebuild resumes from its
own checkpoint on the next worker, applies no event twice, and switches to a version equal to
the live one and to a fold of the store (checked by the workflow, and here by the counts)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from acci.eventstore.records import Position
from acci.eventstore.store import EventStore
from acci.readmodels.consistency import wait_until_projected
from acci.workers.settings import Settings
from tests.workflows.conftest import eventually, worker_env
from tests.workflows.test_durability import WorkerProcess
from tests.workflows.test_operator_doors import ACCI
from tests.workflows.test_snapshot_job import tenant_with

TENANTS = 80
EVENTS_PER_TENANT = 1_000  # 80,000 events: the rebuild takes many batches


async def checkpoint(pool: AsyncConnectionPool, name: str) -> Position | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT transaction_id, global_position FROM read_models.checkpoints"
            " WHERE projection = %s",
            (name,),
        )
        row = await cur.fetchone()
    return None if row is None else Position(int(row[0]), int(row[1]))


async def counts(pool: AsyncConnectionPool) -> dict[tuple[str, str], int]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tenant_id, event_type, event_count FROM read_models.tenant_activity"
        )
        return {(t, e): int(n) for t, e, n in await cur.fetchall()}


async def test_a_worker_killed_mid_rebuild_resumes_and_applies_no_event_twice(
    settings: Settings,
    pool: AsyncConnectionPool,
    store: EventStore,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    for _ in range(TENANTS):
        await tenant_with(store, EVENTS_PER_TENANT)
    queue = f"acci-rebuild-kill-{uuid.uuid4().hex[:8]}"
    first = WorkerProcess(settings, queue, tmp_path / "worker.log")
    second = WorkerProcess(settings, queue, tmp_path / "worker.log")
    try:
        await first.start()
        head = await store.head()
        await wait_until_projected(pool, ("tenant_activity",), head, timeout=120)
        before = await counts(pool)
        assert sum(before.values()) >= TENANTS * EVENTS_PER_TENANT

        process = await asyncio.create_subprocess_exec(
            ACCI,
            *("readmodels", "rebuild", "tenant_activity", "--no-wait", "--json"),
            env={**worker_env(settings), "ACCI_TASK_QUEUE": queue},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        started: dict[str, Any] = json.loads(out)
        version = started["version"]
        rebuild_checkpoint = f"tenant_activity@v{version}"

        async def progressed() -> bool:
            position = await checkpoint(pool, rebuild_checkpoint)
            return position is not None and position.global_position > 0

        await eventually(progressed, within=60, what="the rebuild to apply a first batch")
        # Hold it mid-way: its next batch waits for the checkpoint row, then the worker dies.
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT transaction_id, global_position FROM read_models.checkpoints"
                " WHERE projection = %s FOR UPDATE",
                (rebuild_checkpoint,),
            )
            row = await cur.fetchone()
            assert row is not None
            held = Position(int(row[0]), int(row[1]))
            assert held < head, "the rebuild finished before it could be held; add events"
            first.kill()
        await second.start()

        handle = temporal_env.client.get_workflow_handle(started["workflow_id"])

        async def switched() -> dict[str, Any] | None:
            status = await handle.query("status")
            return status if status and status["phase"] in ("retiring", "done", "failed") else None

        status = await eventually(switched, within=180, what="the rebuild to resume and switch")
        assert status["phase"] == "retiring", status.get("error")
        # The workflow compared the new version with a fold of the store and with the live one.
        assert {c["against"] for c in status["validation"]} == {"fold", "live"}
        assert all(c["expected_checksum"] == c["found_checksum"] for c in status["validation"])
        # No event applied twice: every count is what the live version counted once.
        assert await counts(pool) == before
        assert (await checkpoint(pool, "tenant_activity")) is not None
        assert await checkpoint(pool, rebuild_checkpoint) is None  # folded into the live one
        await handle.cancel()  # not to wait a day for the old version's drop
    finally:
        for worker in (first, second):
            if worker.process is not None and worker.process.poll() is None:
                worker.stop()
