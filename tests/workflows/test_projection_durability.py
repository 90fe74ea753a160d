"""Projections survive a worker killed mid-batch, and any commands through Temporal fold.

The read models are compared with a fold of the event store (``expected_rows``): an event
applied twice shows as a TenantActivity count too high, one skipped as a count too low.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client

from acci.domain.errors import CommandError
from acci.domain.events import DomainEvent
from acci.domain.tenant_events import TenantCreated, TenantRenamed
from acci.domain.tenant_settings import TenantSettings
from acci.domain.user_events import RoleAssigned, RoleRevoked, UserRegistered
from acci.eventstore.records import NewEvent, Position, StreamAppend
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.readmodels.consistency import projected_positions
from acci.readmodels.waiting import BACKLOG_BATCH
from acci.workers.settings import Settings
from tests.integration.projection_support import (
    expected_rows,
    newest_committed,
    read_model_rows,
)
from tests.workflows.conftest import eventually
from tests.workflows.helpers import send
from tests.workflows.test_durability import WorkerProcess

PROJECTIONS = ("tenants", "users", "tenant_activity")


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """The package's settings (own database, task queue, cache prefix), no metrics port."""
    return settings.model_copy(update={"metrics_port": 0})


# the generations the workers bumped


class TunedWorkerProcess(WorkerProcess):
    """`acci worker` as its own process, with settings of its own (small batches, say)."""

    def __init__(self, settings: Settings, task_queue: str, log: Path, **env: str) -> None:
        super().__init__(settings, task_queue, log)
        self._env.update(
            {
                "ACCI_METRICS_PORT": "0",
                "ACCI_REDIS_URL": settings.redis_url.get_secret_value(),
                "ACCI_CACHE_PREFIX": settings.cache_prefix,
                "ACCI_PROJECTION_BATCH_SIZE": "20",
                **env,
            }
        )


@pytest.fixture
def worker_processes(settings: Settings, tmp_path: Path) -> Iterator[list[TunedWorkerProcess]]:
    """Worker processes a test started, each on a new task queue; killed at the end."""
    started: list[TunedWorkerProcess] = []
    yield started
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()


def new_worker(
    settings: Settings, tmp_path: Path, started: list[TunedWorkerProcess]
) -> TunedWorkerProcess:
    worker = TunedWorkerProcess(
        settings, f"acci-pdur-{uuid.uuid4().hex[:8]}", tmp_path / f"worker-{len(started)}.log"
    )
    started.append(worker)
    return worker


# -- where the projections stand ------------------------------------------------------------


async def checkpoints(pool: AsyncConnectionPool) -> dict[str, Position]:
    """Each projection's checkpoint (the start for one that has none yet)."""
    reached = await projected_positions(pool, PROJECTIONS)
    return {
        name: reached[name].position if name in reached else Position.start()
        for name in PROJECTIONS
    }


async def caught_up(pool: AsyncConnectionPool, *, within: float = 60) -> None:
    """Wait until every projection has applied every committed event."""
    target = await newest_committed(pool) or Position.start()

    async def there() -> bool:
        return all(p >= target for p in (await checkpoints(pool)).values())

    await eventually(there, within=within, what=f"every projection to reach {target}")


async def batch_in_flight(pool: AsyncConnectionPool) -> bool:
    """Whether another session of this database has a write transaction open (a batch)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
    return bool(row and row[0])


async def mid_batch(pool: AsyncConnectionPool, before: dict[str, Position]) -> bool:
    """Whether a projection has moved past ``before`` and a batch is being applied now."""
    moved = any(p > before[n] for n, p in (await checkpoints(pool)).items())
    return moved and await batch_in_flight(pool)


async def assert_read_models_are_a_fold(
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    tenants: list[str],
) -> None:
    rows, expected = (
        await read_model_rows(pool, tenants),
        await expected_rows(store, repository, tenants),
    )
    for table in expected:
        assert rows[table] == expected[table], table


# -- a worker killed mid-batch ----------------------------------------------------------------


def _new(event: DomainEvent, store: EventStore) -> NewEvent:
    return NewEvent(*store.registry.encode(event))


async def append_busy_tenants(store: EventStore, prefix: str, count: int) -> list[str]:
    """``count`` tenants of 100 events each: renames, five users, their roles back and forth."""
    tenants = [f"{prefix}-{i:02d}" for i in range(count)]
    for tenant in tenants:
        names = [f"{tenant} v{v}" for v in range(30)]
        own = [_new(TenantCreated(name=names[0], settings=TenantSettings()), store)]
        own += [
            _new(TenantRenamed(old_name=old, new_name=new), store)
            for old, new in itertools.pairwise(names)
        ]
        appends = [StreamAppend(tenant, tenant, "Tenant", tuple(own), uuid.uuid4())]
        for u in range(5):
            registered = UserRegistered(
                email=f"u{u}@{tenant}.example", display_name=f"User {u}", roles=["member"]
            )
            flips: list[DomainEvent] = [
                (RoleAssigned if i % 2 == 0 else RoleRevoked)(role="admin") for i in range(13)
            ]
            events = tuple(_new(e, store) for e in [registered, *flips])
            appends.append(StreamAppend(tenant, f"u{u}", "User", events, uuid.uuid4()))
        await store.append_many(appends)
    return tenants


async def test_a_worker_killed_mid_batch_again_and_again_applies_every_event_exactly_once(
    settings: Settings,
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    tmp_path: Path,
    worker_processes: list[TunedWorkerProcess],
) -> None:
    tenants: list[str] = []
    # Enough events a round for two backlog transactions or more: the first commit moves the
    # checkpoint and the next is still open when the kill lands (with one transaction for the
    # whole round, a loaded machine could see it neither open nor moved in between).
    per_round = 2 * BACKLOG_BATCH // 100 + 1
    for round_number in range(3):
        tenants += await append_busy_tenants(store, f"killed-r{round_number}", per_round)
        before = await checkpoints(pool)
        head = await newest_committed(pool)
        assert head is not None
        worker = new_worker(settings, tmp_path, worker_processes)
        await worker.start()  # on a new task queue: it takes the projection runs over

        await eventually(
            functools.partial(mid_batch, pool, before), within=60, what="a batch in flight"
        )
        worker.kill()
        stood = await checkpoints(pool)
        assert any(p < head for p in stood.values()), f"caught up before the kill: {stood}"
        assert any(stood[n] > before[n] for n in PROJECTIONS), "nothing applied before the kill"

    last = new_worker(settings, tmp_path, worker_processes)
    await last.start()
    await caught_up(pool)
    assert last.stop() == 0
    await assert_read_models_are_a_fold(pool, store, repository, tenants)
    rows = await read_model_rows(pool, tenants)
    assert sum(r["event_count"] for r in rows["tenant_activity"]) == 100 * len(tenants)


async def test_a_worker_killed_and_restarted_on_its_own_task_queue_finishes_the_batch(
    settings: Settings,
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    tmp_path: Path,
    worker_processes: list[TunedWorkerProcess],
) -> None:
    # The usual restart: same deployment, same task queue. The killed worker's batch activity
    # is retried once its heartbeat times out (12 s), and the restarted worker runs it. A backlog
    # is applied in transactions of at least BACKLOG_BATCH events: enough events for several,
    # so that the kill lands in one after another has committed.
    count = 3 * BACKLOG_BATCH // 100 + 1
    tenants = await append_busy_tenants(store, "same-queue", count)
    before = await checkpoints(pool)
    queue = f"acci-pdur-{uuid.uuid4().hex[:8]}"
    for attempt in range(2):
        worker = TunedWorkerProcess(settings, queue, tmp_path / f"same-queue-{attempt}.log")
        worker_processes.append(worker)
        await worker.start()
        if attempt == 0:
            await eventually(
                functools.partial(mid_batch, pool, before), within=60, what="a batch in flight"
            )
            worker.kill()

    await caught_up(pool, within=60)
    assert worker.stop() == 0
    await assert_read_models_are_a_fold(pool, store, repository, tenants)


# -- any commands through Temporal ----------------------------------------------------------

USERS = ("u1", "u2")
NAMES = ("Acme", "Beta Corp", "")  # "": not a name
EMAILS = ("a@x.example", "b@x.example", "not-an-email")
ROLES = ("admin", "member", "viewer", "wizard")  # wizard: not a role


@st.composite
def command(draw: st.DrawFn) -> tuple[int, str, dict[str, Any]]:
    """(tenant index, command type, payload): valid or not, allowed by the rules or not."""
    tenant = draw(st.sampled_from((0, 0, 1)))
    user = {"user_id": draw(st.sampled_from(USERS))}
    kind = draw(
        st.sampled_from(
            (
                *["AssignRole", "RevokeRole"] * 3,
                *["RegisterUser", "ChangeUserEmail", "RenameTenant"] * 2,
                *["DeactivateUser", "UpdateTenantSettings", "SuspendTenant", "ReactivateTenant"],
                "DeleteTenant",
            )
        )
    )
    payload: dict[str, Any] = {
        "RegisterUser": lambda: {
            **user,
            "email": draw(st.sampled_from(EMAILS)),
            "display_name": draw(st.sampled_from(NAMES)),
        },
        "AssignRole": lambda: {**user, "role": draw(st.sampled_from(ROLES))},
        "RevokeRole": lambda: {**user, "role": draw(st.sampled_from(ROLES))},
        "ChangeUserEmail": lambda: {**user, "email": draw(st.sampled_from(EMAILS))},
        "DeactivateUser": lambda: user,
        "RenameTenant": lambda: {"name": draw(st.sampled_from(NAMES))},
        "UpdateTenantSettings": lambda: {"settings": {"max_users": draw(st.integers(-1, 3))}},
        "SuspendTenant": lambda: {"reason": "audit"},
        "ReactivateTenant": dict,
        "DeleteTenant": dict,
    }[kind]()
    return tenant, kind, payload


@hypothesis_settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(commands=st.lists(command(), min_size=6, max_size=16))
async def test_after_any_commands_through_temporal_every_read_model_is_a_fold_of_the_store(
    commands: list[tuple[int, str, dict[str, Any]]],
    worker: Client,
    settings: Settings,
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
) -> None:
    q = settings.task_queue
    tenants = [f"any-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for tenant in tenants:
        await send(worker, q, tenant, "CreateTenant", name="First")
    for user_id in USERS:  # so that most user commands have a user to act on
        await send(
            worker,
            q,
            tenants[0],
            "RegisterUser",
            user_id=user_id,
            email="r@x.example",
            display_name="R",
        )

    async def run_in_order(index: int) -> None:
        for tenant, kind, payload in commands:
            if tenant == index:
                try:
                    await send(worker, q, tenants[index], kind, **payload)
                except CommandError:
                    pass  # refused: bad input or a broken rule; nothing is stored

    # Each tenant's commands in order, the two tenants at once.
    await asyncio.gather(run_in_order(0), run_in_order(1))
    await caught_up(pool, within=30)
    await assert_read_models_are_a_fold(pool, store, repository, tenants)
