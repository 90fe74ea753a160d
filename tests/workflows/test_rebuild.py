"""Blue/green read-model rebuilds through the operator's doors: `acci readmodels`, Temporal.

A real worker runs RebuildReadModelWorkflow. Through the CLI: a rebuild produces a new version
equal to the old one and switches queries to it (the old one dropped after the grace period);
while it is held, queries answer from the live version; two starts at once are one rebuild; a
cancelled one leaves no tables; one whose projection has a bug fails with the differing rows and
leaves the live version serving. The workflow's current details and its `status` query show
the phase and the progress.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import generate_latest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from acci.activities.rebuild_models import rebuild_workflow_id
from acci.eventstore.records import RecordedEvent
from acci.eventstore.store import EventStore
from acci.readmodels.changes import Change
from acci.readmodels.consistency import wait_until_projected
from acci.readmodels.tenancy.users import UsersProjection
from acci.workers.devserver import temporal_binary
from acci.workers.settings import Settings
from tests.workflows.conftest import eventually, worker_env
from tests.workflows.test_operator_doors import ACCI
from tests.workflows.test_snapshot_job import tenant_with

# The advisory lock every version change takes (readmodels/versions.py LOCK): holding it holds a
# rebuild in its first step.
VERSIONS_LOCK = "SELECT pg_advisory_xact_lock(1094927177, 1380795715)"


async def acci(settings: Settings, *args: str, ok: bool = True) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        ACCI,
        *args,
        env=worker_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    if ok:
        assert process.returncode == 0, err.decode()
    return int(process.returncode or 0), out.decode(), err.decode()


async def rows(pool: AsyncConnectionPool, table: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier("read_models", table))
        )
        return await cur.fetchall()


async def table_exists(pool: AsyncConnectionPool, table: str) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"read_models.{table}",))
        row = await cur.fetchone()
        return bool(row and row[0])


async def live_version(pool: AsyncConnectionPool, name: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT version FROM read_models.versions WHERE read_model = %s AND state = 'live'",
            (name,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def caught_up(pool: AsyncConnectionPool, store: EventStore) -> None:
    """Every live projection has applied everything committed so far."""
    head = await store.head()
    await wait_until_projected(pool, ("tenants", "users", "tenant_activity"), head, timeout=60)


@pytest.fixture
async def seeded(worker: Client, store: EventStore, pool: AsyncConnectionPool) -> str:
    tenant = await tenant_with(store, 40)
    await caught_up(pool, store)
    return tenant


@pytest.fixture
async def versions_held(pool: AsyncConnectionPool) -> AsyncIterator[asyncio.Event]:
    """Hold the versions lock until the event is set (a rebuild waits in its first step)."""
    release = asyncio.Event()
    held = asyncio.Event()

    async def hold() -> None:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(VERSIONS_LOCK)
            held.set()
            await release.wait()

    task = asyncio.create_task(hold())
    await held.wait()
    yield release
    release.set()
    await task


async def test_a_rebuild_through_the_cli_equals_the_old_version_and_switches(
    seeded: str, settings: Settings, pool: AsyncConnectionPool, worker: Client
) -> None:
    before = await rows(pool, "tenant_activity")
    old = await live_version(pool, "tenant_activity")
    _, out, _ = await acci(
        settings, "readmodels", "rebuild", "tenant_activity", "--grace", "3", "--json"
    )
    done = json.loads(out)
    new = old + 1
    assert done["workflow_id"] == rebuild_workflow_id("tenant_activity", new)
    assert done["phase"] == "retiring" and done["version"] == new and done["retired"] == old
    checked = {(c["against"], c["table"]) for c in done["validation"]}
    assert checked == {("fold", "tenant_activity"), ("live", "tenant_activity")}
    assert all(c["expected_checksum"] == c["found_checksum"] for c in done["validation"])
    assert done["progress"]["applied"] >= 40 and done["progress"]["caught_up"]
    assert await live_version(pool, "tenant_activity") == new
    assert await rows(pool, "tenant_activity") == before  # the same answers, from version new
    # The worker (in this process) exports the rebuild's progress and outcome.
    exposed = generate_latest().decode()
    labels = f'read_model="tenant_activity",version="{new}"'
    assert f'acci_rebuild_phase{{acci_rebuild_phase="switched",{labels}}} 1.0' in exposed
    assert 'acci_rebuild_switches_total{read_model="tenant_activity"}' in exposed
    applied = [
        float(line.rsplit(" ", 1)[1])
        for line in exposed.splitlines()
        if line.startswith('acci_rebuild_events_total{read_model="tenant_activity"}')
    ]
    assert applied and applied[0] >= 40

    _, out, _ = await acci(settings, "readmodels", "status", "--json")
    [shown] = [m for m in json.loads(out) if m["read_model"] == "tenant_activity"]
    assert shown["live_version"] == new
    states = {v["version"]: v for v in shown["versions"]}
    assert states[old]["state"] == "retired" and states[old]["drop_after"]

    # After the grace period the workflow drops the old version, and ends.
    handle = worker.get_workflow_handle(done["workflow_id"])
    result = await asyncio.wait_for(handle.result(), 60)
    assert result["phase"] == "done"
    assert not await table_exists(pool, f"tenant_activity_v{old}")
    _, out, _ = await acci(settings, "readmodels", "status")
    assert f"tenant_activity: live version {new}" in out


async def test_while_a_rebuild_runs_queries_answer_and_two_starts_are_one_and_cancel_drops_it(
    seeded: str,
    settings: Settings,
    pool: AsyncConnectionPool,
    worker: Client,
    versions_held: asyncio.Event,
) -> None:
    live = await live_version(pool, "tenants")
    target = live + 1
    starts = await asyncio.gather(
        *(acci(settings, "readmodels", "rebuild", "tenants", "--no-wait", "--json") for _ in "ab")
    )
    runs = [json.loads(out) for _, out, _ in starts]
    assert (
        runs[0]["workflow_id"] == runs[1]["workflow_id"] == rebuild_workflow_id("tenants", target)
    )
    assert runs[0]["run_id"] == runs[1]["run_id"]  # the second joined the first

    handle = worker.get_workflow_handle(runs[0]["workflow_id"])

    async def status() -> dict[str, Any] | None:
        found = await handle.query("status")
        return found if isinstance(found, dict) else None

    assert (await eventually(status, within=30, what="the status query"))["phase"] == "starting"
    # The current details show in the Web UI without a query (the SDK's metadata query).
    metadata = await handle.query("__temporal_workflow_metadata")
    assert f"tenants v{target}: starting" in str(metadata)

    # A query while the rebuild is held answers from the live version.
    _, out, _ = await acci(settings, "tenant", "get", "--tenant", seeded, "--json")
    assert json.loads(out)["tenant_id"] == seeded
    assert await live_version(pool, "tenants") == live

    _, out, _ = await acci(settings, "readmodels", "status", "--json")
    [tenants] = [m for m in json.loads(out) if m["read_model"] == "tenants"]
    assert tenants["live_version"] == live

    cancel = asyncio.create_task(
        acci(settings, "readmodels", "rebuild", "tenants", "--version", str(target), "--cancel")
    )

    async def cancel_requested() -> bool:
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
                return True
        return False

    await eventually(cancel_requested, within=60, what="the cancel request")
    versions_held.set()  # the step the cancel waits on ends; then the version is dropped
    _, out, _ = await cancel
    assert "cancelled" in out and "tables are dropped" in out
    assert not await table_exists(pool, f"tenants_v{target}")
    assert await live_version(pool, "tenants") == live
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM read_models.versions WHERE read_model = 'tenants'"
        )
        assert await cur.fetchone() == (1,)
        cur = await conn.execute(
            "SELECT count(*) FROM read_models.checkpoints WHERE projection = %s",
            (f"tenants@v{target}",),
        )
        assert await cur.fetchone() == (0,)


def buggy(self: UsersProjection, event: RecordedEvent) -> list[Change]:
    """The users projection with a bug: a role assignment is not applied."""
    if event.event_type == "RoleAssigned":
        return []
    return ORIGINAL(self, event)


ORIGINAL = UsersProjection.handle_event


async def test_a_rebuild_whose_projection_has_a_bug_fails_with_the_rows_and_the_live_one_serves(
    settings: Settings,
    pool: AsyncConnectionPool,
    store: EventStore,
    worker: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = f"bug-{uuid.uuid4().hex[:8]}"
    for args in (
        ("tenant", "create", "--tenant", tenant, "--name", "Bug"),
        (
            "user",
            "register",
            "u1",
            "--tenant",
            tenant,
            "--email",
            "u1@x.io",
            "--name",
            "U1",
            "--role",
            "member",
        ),
        ("user", "assign-role", "u1", "--tenant", tenant, "--role", "admin"),
    ):
        await acci(settings, *args)
    await caught_up(pool, store)
    before = await rows(pool, "users")
    live = await live_version(pool, "users")

    monkeypatch.setattr(UsersProjection, "handle_event", buggy)  # the worker runs in-process
    code, out, err = await acci(settings, "readmodels", "rebuild", "users", ok=False)
    assert (code, out) == (1, "")  # the progress bar drew on stderr, not stdout
    assert "differs from the live" in err and "is untouched and serving" in err
    assert (
        f"'tenant_id': '{tenant}'" in err and "'roles': ['admin', 'member']" in err
    )  # a differing row
    assert await live_version(pool, "users") == live
    assert await rows(pool, "users") == before

    _, out, _ = await acci(settings, "readmodels", "status", "--json")
    [users] = [m for m in json.loads(out) if m["read_model"] == "users"]
    [failed] = [v for v in users["versions"] if v["state"] == "failed"]
    assert "differs from the live" in failed["detail"]
    assert failed["rebuild"]["phase"] == "failed"

    # Its tables stay to be looked at until it is cancelled (or rebuilt).
    assert await table_exists(pool, f"users_v{failed['version']}")
    _, out, _ = await acci(settings, "readmodels", "rebuild", "users", "--cancel")
    assert "dropped version" in out
    assert not await table_exists(pool, f"users_v{failed['version']}")


async def temporal(settings: Settings, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(temporal_binary()),
        *args,
        "--address",
        settings.temporal_address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, (out + err).decode()
    return out.decode()


async def test_the_plain_temporal_cli_starts_and_queries_a_rebuild_as_the_readme_shows(
    seeded: str, settings: Settings, pool: AsyncConnectionPool
) -> None:
    live = await live_version(pool, "users")
    workflow_id = rebuild_workflow_id("users", live + 1)
    job = {"read_model": "users", "version": live + 1, "grace_seconds": 0}
    for _ in "ab":  # the second start joins the first (UseExisting)
        await temporal(
            settings,
            *("workflow", "start", "--task-queue", settings.task_queue),
            *("--type", "RebuildReadModelWorkflow", "--workflow-id", workflow_id),
            *("--id-conflict-policy", "UseExisting", "--input", json.dumps(job)),
        )
    out = await temporal(
        settings, "workflow", "result", "--workflow-id", workflow_id, "--output", "json"
    )
    result = json.loads(out)["result"]
    assert result["phase"] == "done" and result["switched"] and result["retired"] == live
    out = await temporal(
        settings,
        "workflow",
        "query",
        "--workflow-id",
        workflow_id,
        "--type",
        "status",
        "--output",
        "json",
    )
    assert json.loads(out)["queryResult"][0]["phase"] == "done"
    assert await live_version(pool, "users") == live + 1
    assert not await table_exists(pool, f"users_v{live}")


async def test_an_unknown_read_model_or_version_is_refused_and_nothing_starts(
    settings: Settings, pool: AsyncConnectionPool
) -> None:
    code, _, err = await acci(settings, "readmodels", "rebuild", "nope", ok=False)
    assert code == 1
    assert "error (not_found): no read model 'nope'; the installed read models are [" in err
    code, _, err = await acci(
        settings, "readmodels", "rebuild", "users", "--version", "0", ok=False
    )
    assert code == 2 and "error (usage)" in err
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM read_models.versions WHERE state <> 'live'")
        assert await cur.fetchone() == (0,)
