"""`acci projections status` and the lag gauges show real lag: a stall, and a paused projection.

Head and lag are the newest *committed* event and the events committed after the checkpoint,
so a projection held back by an open event-writing transaction shows a stall (that
transaction's age and pid) instead of lag 0, and a paused projection shows the lag it builds.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from acci.eventstore.records import Position
from acci.readmodels.checkpoints import CheckpointStore
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from tests.integration.projection_support import newest_committed
from tests.workflows.conftest import RABBITMQ_URL, eventually, free_port, worker_env
from tests.workflows.helpers import send
from tests.workflows.test_operator_doors import ACCI, run


@pytest.fixture(scope="module")
def settings(database_url: str, temporal_address: str) -> Settings:
    return Settings(
        database_url=database_url,  # type: ignore[arg-type]
        temporal_address=temporal_address,
        task_queue=f"acci-stall-{uuid.uuid4().hex[:8]}",
        rabbitmq_url=RABBITMQ_URL,  # type: ignore[arg-type]
        cache_prefix=f"acci-test-{uuid.uuid4().hex[:12]}",
        projection_idle_ms=300,  # the batches report (and measure their lag) often
        metrics_port=free_port(),
    )


@pytest_asyncio.fixture(scope="module")
async def worker(
    settings: Settings, temporal_env: WorkflowEnvironment, pool: AsyncConnectionPool
) -> AsyncIterator[Client]:
    async with running_worker(settings, temporal_env.client):
        yield temporal_env.client


async def status_json(settings: Settings) -> dict[str, Any]:
    """``acci projections status --json`` as a process, by projection name."""
    process = await asyncio.create_subprocess_exec(
        ACCI,
        "projections",
        "status",
        "--json",
        env=worker_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return {s["name"]: s for s in json.loads(out)}


async def projections_cli(settings: Settings, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        ACCI, "projections", *args, env=worker_env(settings)
    )
    assert await asyncio.wait_for(process.wait(), 60) == 0


def scrape(settings: Settings) -> str:
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def gauge(text: str, name: str, projection: str | None = None) -> float:
    labels = "" if projection is None else f'{{projection="{projection}"}}'
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"no {name} for {projection}"
    return float(match[1])


async def test_a_stalled_projection_shows_the_stall_not_lag_0(
    worker: Client, settings: Settings, pool: AsyncConnectionPool, database_url: str
) -> None:
    q = settings.task_queue
    await send(worker, q, "stall-a", "CreateTenant", name="A")

    async def caught_up() -> bool:
        shown = await status_json(settings)
        return all(s["lag_events"] == 0 and not s["stalled"] for s in shown.values())

    await eventually(caught_up, within=20, what="every projection caught up")
    async with await psycopg.AsyncConnection.connect(database_url) as late:
        # An event-writing transaction that stays open: every event committed after it waits.
        await send(worker, q, "stall-late", "CreateTenant", name="Late")  # its partition
        await late.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, command_id)"
            " VALUES (gen_random_uuid(), 'stall-late', 'stall-late', 'Tenant', 2,"
            " 'TenantRenamed', 1, '{\"new_name\": \"Later\"}', gen_random_uuid())"
        )
        cur = await late.execute("SELECT pg_backend_pid()")
        pid = (await cur.fetchone())[0]  # type: ignore[index]
        renamed = await send(worker, q, "stall-a", "RenameTenant", name="A2")
        head = str(await newest_committed(pool))
        assert Position.parse(renamed.position or "") <= Position.parse(head)
        shown = await status_json(settings)
        tenants = shown["tenants"]
        assert tenants["state"] == "running"
        assert tenants["head"] == head and tenants["lag_events"] >= 1
        assert tenants["stalled"] and tenants["stall_pid"] == pid
        assert tenants["stall_seconds"] > 0

        async def gauged() -> bool:
            text = await asyncio.to_thread(scrape, settings)
            return gauge(text, "acci_event_horizon_stall_seconds") > 0 and (
                gauge(text, "acci_projection_lag_events", "tenants") >= 1
            )

        await eventually(gauged, within=10, what="the stall on the gauges")
        await late.rollback()

    await eventually(caught_up, within=20, what="every projection caught up after the stall")

    async def unstalled() -> bool:
        text = await asyncio.to_thread(scrape, settings)
        return gauge(text, "acci_event_horizon_stall_seconds") == 0

    await eventually(unstalled, within=10, what="the stall gauge back to 0")


async def test_a_paused_projection_reports_its_real_lag(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    q = settings.task_queue
    await send(worker, q, "stall-p", "CreateTenant", name="P")
    await projections_cli(settings, "pause", "tenants")
    try:
        for i in range(3):
            await send(worker, q, "stall-p", "RenameTenant", name=f"P{i}")
        shown = (await status_json(settings))["tenants"]
        assert shown["state"] == "paused"
        assert shown["lag_events"] >= 3 and shown["lag_seconds"] > 0
        assert shown["head"] == str(await newest_committed(pool))
        assert not shown["stalled"]
        # Waiting for the paused read model times out, and says the command is stored all the
        # same (its result first), so that nobody sends it again as a new command.
        code, out, err = await run(
            [ACCI, "tenant", "rename", "-t", "stall-p", "--name", "P9", "--wait-for-read-model"],
            {**worker_env(settings), "ACCI_QUERY_CONSISTENCY_TIMEOUT_MS": "300"},
            within=60,
        )
        assert code == 1, err
        assert re.match(r"RenameTenant: Tenant stall-p -> v5, position \d+:\d+", out), out
        assert err.startswith(
            "error (projection): the command is stored (above), but read model 'tenants'"
            " has not reached position"
        ), err
    finally:
        await projections_cli(settings, "resume", "tenants")

    async def applied() -> bool:
        return (await status_json(settings))["tenants"]["lag_events"] == 0

    await eventually(applied, within=20, what="the resumed projection to catch up")


async def test_an_open_transaction_on_another_table_does_not_hold_back_read_your_writes(
    worker: Client, settings: Settings, database_url: str
) -> None:
    """A subscriber's inbox transaction held open while its handler runs (or any other
    program's write) used to make another tenant's --wait-for-read-model time out."""
    async with await psycopg.AsyncConnection.connect(database_url) as inbox:
        await inbox.execute(
            "INSERT INTO subscriptions.inbox (subscriber, message_id, event_type, tenant_id)"
            " VALUES (%s, %s, 'TenantCreated', 'stall-busy')",
            ("slow-handler", uuid.uuid4()),
        )
        # Held open for the whole command (the inbox row's handler is still "running").
        code, out, err = await run(
            [
                ACCI,
                "tenant",
                "create",
                "--tenant",
                "stall-other",
                "--name",
                "Other",
                "--wait-for-read-model",
                "--json",
            ],
            worker_env(settings),
            within=60,
        )
        assert code == 0, err
        assert json.loads(out)["read_model"]["name"] == "Other"
        await inbox.rollback()


async def test_a_projection_no_workflow_answers_for_shows_as_stopped_with_its_real_lag(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    """A checkpoint whose projection runs nowhere (retired, or its workflow terminated)."""
    retired = f"retired_{uuid.uuid4().hex[:8]}"
    await CheckpointStore(pool).get(retired)  # at the start
    await send(worker, settings.task_queue, "stall-stopped", "CreateTenant", name="S")
    shown = (await status_json(settings))[retired]
    assert shown["state"] == "stopped"
    assert shown["position"] == "0:0"
    assert shown["head"] == str(await newest_committed(pool))
    assert shown["lag_events"] >= 1
