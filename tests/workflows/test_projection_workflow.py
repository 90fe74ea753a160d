"""Projection workflows on the real Temporal dev server: commands reach the read models.

The module's worker waits 60 s between looks when a projection is caught up, so every read
model that changes within seconds of a command was woken by that command.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from acci.activities.models import ProjectionConfig, ProjectionStatus, projection_workflow_id
from acci.eventstore.records import Position
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.readmodels.installed import default_projections
from acci.workers.projection_runs import start_projections
from acci.workers.settings import Settings
from acci.workers.worker import running_worker
from acci.workflows.projection import ProjectionWorkflow
from tests.integration.projection_support import (
    FlakyPause,
    FlakySkip,
    create_seen_table,
    expected_rows,
    read_model_rows,
    seen,
)
from tests.workflows.conftest import RABBITMQ_URL, eventually, free_port, worker_env
from tests.workflows.helpers import send

FLAKY_PAUSE = FlakyPause()
FLAKY_SKIP = FlakySkip()


class Committed:
    """The worker's ``on_committed`` callback: records the tenants of each commit."""

    def __init__(self) -> None:
        self.tenants: set[str] = set()

    async def __call__(self, tenants: set[str]) -> None:
        self.tenants |= tenants


COMMITTED = Committed()


@pytest.fixture(scope="module")
def settings(database_url: str, temporal_address: str) -> Settings:
    return Settings(
        database_url=database_url,  # type: ignore[arg-type]
        temporal_address=temporal_address,
        task_queue=f"acci-proj-{uuid.uuid4().hex[:8]}",
        rabbitmq_url=RABBITMQ_URL,  # type: ignore[arg-type]
        db_pool_max_size=30,
        projection_idle_ms=30_000,
        projection_max_attempts=3,
        projection_retry_initial_ms=50,
        projection_retry_max_ms=200,
        projection_wake_interval_ms=20,
        projection_guard_s=0.5,
        metrics_port=free_port(),
    )


@pytest_asyncio.fixture(scope="module")
async def worker(
    settings: Settings, temporal_env: WorkflowEnvironment, pool: AsyncConnectionPool
) -> AsyncIterator[Client]:
    await create_seen_table(pool)
    projections = [*default_projections(), FLAKY_PAUSE, FLAKY_SKIP]
    async with running_worker(
        settings, temporal_env.client, projections=projections, on_committed=COMMITTED
    ):
        yield temporal_env.client


async def status(client: Client, name: str) -> ProjectionStatus:
    handle = client.get_workflow_handle_for(ProjectionWorkflow.run, projection_workflow_id(name))
    return await handle.query(ProjectionWorkflow.status)


@dataclass
class Cli:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def projections_cli(settings: Settings, *args: str) -> Cli:
    """``acci projections …`` as a process (the in-process worker keeps running meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "acci.workers.cli_projections",
        *args,
        env=worker_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Cli(process.returncode, out.decode(), err.decode())


async def test_commands_sent_through_temporal_reach_every_read_model_at_once(
    worker: Client,
    settings: Settings,
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
) -> None:
    q, t = settings.task_queue, "wf-proj-every"
    await send(worker, q, t, "CreateTenant", name="Every")
    await send(worker, q, t, "RegisterUser", user_id="u1", email="u1@x.example", display_name="A")
    await send(worker, q, t, "RegisterUser", user_id="u2", email="u2@x.example", display_name="B")
    await send(worker, q, t, "AssignRole", user_id="u1", role="admin")
    await send(worker, q, t, "DeactivateUser", user_id="u2")
    last = await send(worker, q, t, "RenameTenant", name="Every Corp")
    expected = await expected_rows(store, repository, [t])

    async def projected() -> bool:
        return await read_model_rows(pool, [t]) == expected

    # Well inside the 60 s idle wait: the commands woke the projections.
    await eventually(projected, within=10, what="the read models to show the commands")
    rows = await read_model_rows(pool, [t])
    assert (rows["tenants"][0]["name"], rows["tenants"][0]["user_count"]) == ("Every Corp", 1)
    assert [(u["user_id"], u["roles"]) for u in rows["users"]] == [
        ("u1", ["admin", "member"]),
        ("u2", ["member"]),
    ]
    assert t in COMMITTED.tenants
    assert last.position is not None

    async def reported() -> bool:  # the batches report back to their workflows within ~1 s
        for name in ("tenants", "users", "tenant_activity"):
            current = await status(worker, name)
            if Position.parse(current.position) < Position.parse(last.position or ""):
                return False
            assert current.state == "running"
        return True

    await eventually(reported, within=10, what="the workflows to report the new position")


async def test_a_poison_event_pauses_its_projection_the_others_go_on_and_a_retry_applies_it_once(
    worker: Client, settings: Settings, pool: AsyncConnectionPool, store: EventStore
) -> None:
    q, t = settings.task_queue, "wf-proj-poison"
    FLAKY_PAUSE.poisoned.add("Poison")
    await send(worker, q, t, "CreateTenant", name="Healthy")
    await send(worker, q, t, "RenameTenant", name="Poison")
    await send(worker, q, t, "RenameTenant", name="After")
    created, poison, after = await store.read_stream(t, t)

    async def paused() -> ProjectionStatus | None:
        current = await status(worker, "flaky_pause")
        return current if current.state == "paused" else None

    stopped = await eventually(paused, within=20, what="flaky_pause to pause")
    assert stopped.last_error and str(poison.event_id) in stopped.last_error
    assert "poisoned TenantRenamed" in stopped.last_error
    assert stopped.position == str(created.position)

    async def renamed() -> bool:  # the other projections went on
        rows = await read_model_rows(pool, [t])
        return bool(rows["tenants"]) and rows["tenants"][0]["name"] == "After"

    await eventually(renamed, within=10, what="the tenants projection to go on")

    listed = await projections_cli(settings, "dlq", "list", "--projection", "flaky_pause", "--json")
    assert listed.code == 0, listed.err
    (letter,) = [d for d in listed.json() if d["event_id"] == str(poison.event_id)]
    assert (letter["attempts"], letter["resolution"], letter["tenant_id"]) == (3, None, t)
    shown = await projections_cli(settings, "status", "--json")
    assert shown.code == 0, shown.err
    by_name = {s["name"]: s for s in shown.json()}
    assert by_name["flaky_pause"]["state"] == "paused"
    assert by_name["tenants"]["state"] == "running"
    assert "poisoned" in by_name["flaky_pause"]["last_error"]

    FLAKY_PAUSE.poisoned.clear()  # the bug is fixed
    retried = await projections_cli(
        settings, "dlq", "retry", str(poison.event_id), "--projection", "flaky_pause"
    )
    assert retried.code == 0, retried.err
    assert "retried, 1 row change(s)" in retried.out
    again = await projections_cli(
        settings, "dlq", "retry", str(poison.event_id), "--projection", "flaky_pause"
    )
    assert again.code == 1
    assert "error (projection)" in again.err and "already retried" in again.err

    resumed = await projections_cli(settings, "resume", "flaky_pause")
    assert resumed.code == 0, resumed.err

    async def all_applied_once() -> bool:
        applied = await seen(pool, "flaky_pause", t)
        return applied == {e.event_id: 1 for e in (created, poison, after)}

    await eventually(all_applied_once, within=10, what="flaky_pause to apply every event once")
    assert (await status(worker, "flaky_pause")).state == "running"


async def test_a_refused_event_is_parked_and_the_skip_projection_goes_on(
    worker: Client, settings: Settings, pool: AsyncConnectionPool, store: EventStore
) -> None:
    q, t = settings.task_queue, "wf-proj-refused"
    FLAKY_SKIP.refused.add("Refused")
    await send(worker, q, t, "CreateTenant", name="Skipping")
    await send(worker, q, t, "RenameTenant", name="Refused")
    await send(worker, q, t, "RenameTenant", name="After")
    created, refused, after = await store.read_stream(t, t)

    async def passed_it() -> bool:
        return await seen(pool, "flaky_skip", t) == {created.event_id: 1, after.event_id: 1}

    await eventually(passed_it, within=20, what="flaky_skip to park the event and go on")
    assert (await status(worker, "flaky_skip")).state == "running"
    listed = await projections_cli(settings, "dlq", "list", "--json")
    (letter,) = [d for d in listed.json() if d["event_id"] == str(refused.event_id)]
    assert letter["projection"] == "flaky_skip" and "NotNullViolation" in letter["error"]

    skipped = await projections_cli(
        settings, "dlq", "skip", str(refused.event_id), "--projection", "flaky_skip"
    )
    assert skipped.code == 0, skipped.err
    listed = await projections_cli(settings, "dlq", "list")
    assert str(refused.event_id) not in listed.out
    assert await seen(pool, "flaky_skip", t) == {created.event_id: 1, after.event_id: 1}


async def test_a_paused_projection_applies_nothing_until_resumed_from_the_cli(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    q, t = settings.task_queue, "wf-proj-paused"
    await send(worker, q, t, "CreateTenant", name="Before")

    async def row() -> dict[str, Any] | None:
        rows = (await read_model_rows(pool, [t]))["tenants"]
        return rows[0] if rows else None

    await eventually(row, within=10, what="the tenant row")
    paused = await projections_cli(settings, "pause", "tenants")
    assert paused.code == 0, paused.err
    assert paused.out.startswith("tenants: paused at ")
    renamed = await send(worker, q, t, "RenameTenant", name="While Paused")
    assert renamed.position is not None

    async def activity_passed() -> bool:  # another projection has applied the rename
        current = await status(worker, "tenant_activity")
        return Position.parse(current.position) >= Position.parse(renamed.position or "")

    await eventually(activity_passed, within=10, what="tenant_activity to apply the rename")
    assert (await row() or {})["name"] == "Before"
    assert (await status(worker, "tenants")).state == "paused"

    resumed = await projections_cli(settings, "resume", "tenants")
    assert resumed.code == 0, resumed.err

    async def caught_up() -> bool:
        return (await row() or {}).get("name") == "While Paused"

    await eventually(caught_up, within=10, what="the tenants projection to catch up")
    unknown = await projections_cli(settings, "pause", "no_such_projection")
    assert unknown.code == 1 and "error (not_found)" in unknown.err


async def test_the_worker_serves_projection_lag_as_prometheus_gauges(
    worker: Client, settings: Settings
) -> None:
    await send(worker, settings.task_queue, "wf-proj-metrics", "CreateTenant", name="Metrics")
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(scrape)
    for name in ("tenants", "users", "tenant_activity"):
        assert f'acci_projection_lag_events{{projection="{name}"}}' in text
        assert f'acci_projection_lag_seconds{{projection="{name}"}}' in text


async def test_a_projection_continues_as_new_with_its_state_and_its_history_replays(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    q, t = settings.task_queue, "wf-proj-can"
    handle = worker.get_workflow_handle_for(ProjectionWorkflow.run, projection_workflow_id("users"))
    first_run = (await handle.describe()).run_id
    # A short history limit: a few wake-ups later the run continues as new.
    await handle.signal(
        ProjectionWorkflow.configure,
        ProjectionConfig(name="users", idle_seconds=60, max_history_events=20),
    )
    await send(worker, q, t, "CreateTenant", name="Continued")
    for i in range(6):
        await send(
            worker, q, t, "RegisterUser", user_id=f"u{i}", email="u@x.example", display_name="U"
        )

    async def new_run() -> str | None:
        description = await handle.describe()
        return description.run_id if description.run_id != first_run else None

    await eventually(new_run, within=20, what="the users projection to continue as new")

    async def users() -> bool:
        return len((await read_model_rows(pool, [t]))["users"]) == 6

    await eventually(users, within=10, what="every user after continue-as-new")
    current = await status(worker, "users")
    assert current.state == "running" and current.applied_total > 0

    old = worker.get_workflow_handle(handle.id, run_id=first_run)
    assert (await old.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    replayer = Replayer(workflows=[ProjectionWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await old.fetch_history())


@pytest.fixture(autouse=True)
def _flaky_projections_are_healthy_again() -> None:
    FLAKY_PAUSE.poisoned.clear()
    FLAKY_SKIP.refused.clear()


async def test_a_projection_run_another_deployment_took_away_is_taken_back(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    """A worker of another database on the same namespace, started on its own task queue,
    takes the run (saying at error level that two deployments share the namespace) and then
    stops: the run would wait on its queue for good. This deployment's worker takes it back."""
    handle = worker.get_workflow_handle(projection_workflow_id("tenants"))
    assert (await handle.describe()).task_queue == settings.task_queue
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:8]}"
    await start_projections(
        worker,
        [ProjectionConfig(name="tenants")],
        task_queue=elsewhere,
        deployment="db.example:5432/another",
    )
    taken = await handle.describe()
    assert (taken.task_queue, taken.status) == (elsewhere, WorkflowExecutionStatus.RUNNING)

    async def back() -> bool:
        d = await handle.describe()
        return d.task_queue == settings.task_queue and d.status == WorkflowExecutionStatus.RUNNING

    await eventually(back, within=30, what="the run to be taken back")
    # And it projects again: a command reaches the read model.
    t = f"guarded-{uuid.uuid4().hex[:6]}"
    await send(worker, settings.task_queue, t, "CreateTenant", name="Guarded")

    async def projected() -> bool:
        return bool((await read_model_rows(pool, [t]))["tenants"])

    await eventually(projected, within=30, what="the tenant's row")


@pytest.mark.parametrize(
    "args",
    [("pause", "tenantz"), ("resume", "tenantz"), ("dlq", "list", "-p", "tenantz")]
    + [("dlq", verb, str(uuid.UUID(int=1)), "-p", "tenantz") for verb in ("retry", "skip")],
)
async def test_a_projection_name_that_names_none_is_not_found(
    worker: Client, settings: Settings, args: tuple[str, ...]
) -> None:
    ran = await projections_cli(settings, *args)
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err.endswith(
        "error (not_found): no projection 'tenantz'; the installed projections are"
        " ['open_invoices', 'tenant_activity', 'tenants', 'users']\n"
    ), ran.err
