"""Projections against the real event store: exactly once, never skipping, failures parked."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from acci.activities.command_activities import parse
from acci.activities.command_handler import CommandHandler
from acci.activities.models import CommandInput
from acci.domain.errors import CommandError
from acci.domain.tenant_settings import TenantSettings
from acci.eventstore.records import Position, RecordedEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.readmodels import waiting
from acci.readmodels.changes import Change, Update
from acci.readmodels.errors import NotFoundError, ProjectionError, ReadModelUnavailableError
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.shared_log import SharedLog
from tests.integration.projection_support import (
    FlakyPause,
    FlakySkip,
    create_seen_table,
    expected_rows,
    newest_committed,
    read_model_rows,
    seen,
    tenancy_projections,
)
from tests.workflows.conftest import eventually


class Committed:
    """An ``on_committed`` callback that records each call."""

    def __init__(self) -> None:
        self.calls: list[set[str]] = []

    async def __call__(self, tenants: set[str]) -> None:
        self.calls.append(set(tenants))

    @property
    def tenants(self) -> set[str]:
        return set().union(*self.calls)


@pytest.fixture(scope="module")
def committed() -> Committed:
    return Committed()


@pytest.fixture(scope="module")
def runners(store: EventStore, committed: Committed) -> list[ProjectionRunner]:
    return [ProjectionRunner(p, store, on_committed=committed) for p in tenancy_projections()]


@pytest.fixture(scope="module")
def handler(store: EventStore, repository: AggregateRepository) -> CommandHandler:
    return CommandHandler(store, repository)


def new_tenant(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def send(
    handler: CommandHandler, tenant: str, command_type: str, **payload: Any
) -> Position | None:
    """Handle a command on the direct path; the position of its last event, if it stored any
    (a refused one, for bad input or a broken rule, stores nothing)."""
    command = CommandInput(
        command_id=uuid.uuid4(), tenant_id=tenant, command_type=command_type, payload=payload
    )
    try:
        outcome = await handler.handle(tenant, parse(command), command_id=command.command_id)
    except CommandError:
        return None
    return outcome.positions[-1] if outcome.positions else None


async def visible(store: EventStore) -> None:
    """Wait until every committed event is visible to gap-free readers.

    A write transaction open in this database holds them back for a moment;
    after this the runners and the fold read the same events.
    """
    newest = await newest_committed(store.pool)
    if newest is not None:
        await eventually(lambda: _at_least(store, newest), within=10, what=f"{newest} visible")


async def _at_least(store: EventStore, position: Position) -> bool:
    return await store.readable_head() >= position


async def catch_up(runners: list[ProjectionRunner], store: EventStore | None = None) -> None:
    """Run every runner until it has applied everything visible (after waiting, with ``store``,
    until every committed event is visible)."""
    if store is not None:
        await visible(store)
    for runner in runners:
        report = await runner.catch_up(limit=200)
        assert report.failure is None and not report.paused, report
        assert report.caught_up, report


async def assert_read_models_match_the_fold(
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    tenants: list[str],
    runners: list[ProjectionRunner],
) -> None:
    await catch_up(runners, store)
    assert await read_model_rows(pool, tenants) == await expected_rows(store, repository, tenants)


# -- the read models are a fold of the event store --------------------------------------------

NAMES = ("Acme", "Beta Corp", "Gamma")
EMAILS = ("a@x.example", "b@x.example", "c@x.example", "not-an-email")
ROLES = ("owner", "admin", "member", "viewer", "wizard")  # wizard: not a role
USERS = ("u1", "u2")
SETTINGS = ({}, {"max_users": 5}, {"locale": "de-DE", "features": {"beta": True}}, {"max_users": 0})

# Weighted towards the commands that keep a tenant alive and its users busy, so that most
# examples reach every event type; refusals (bad input, broken rules) still come up often.
KINDS = (
    *["RegisterUser"] * 3,
    *["AssignRole"] * 8,
    *["RevokeRole"] * 8,
    *["ChangeUserEmail"] * 3,
    *["DeactivateUser"] * 2,
    *["RenameTenant"] * 3,
    *["UpdateTenantSettings"] * 2,
    *["SuspendTenant"] * 2,
    *["ReactivateTenant"] * 3,
    "DeleteTenant",
    *["CatchUp"] * 4,
)


@st.composite
def step(draw: st.DrawFn) -> tuple[int, str, dict[str, Any]]:
    """(tenant index, command type or CatchUp, payload)."""
    tenant = draw(st.sampled_from((0, 0, 0, 1)))
    kind = draw(st.sampled_from(KINDS))
    user = {"user_id": draw(st.sampled_from(USERS))}
    payload: dict[str, Any] = {
        "RegisterUser": lambda: {
            **user,
            "email": draw(st.sampled_from(EMAILS)),
            "display_name": draw(st.sampled_from(NAMES)),
            "roles": draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=3)),
        },
        "AssignRole": lambda: {**user, "role": draw(st.sampled_from(ROLES))},
        "RevokeRole": lambda: {**user, "role": draw(st.sampled_from(ROLES))},
        "ChangeUserEmail": lambda: {**user, "email": draw(st.sampled_from(EMAILS))},
        "DeactivateUser": lambda: user,
        "RenameTenant": lambda: {"name": draw(st.sampled_from(NAMES))},
        "UpdateTenantSettings": lambda: {"settings": draw(st.sampled_from(SETTINGS))},
        "SuspendTenant": lambda: {"reason": "audit"},
        "ReactivateTenant": dict,
        "DeleteTenant": dict,
        # A partial catch-up of one projection between commands.
        "CatchUp": lambda: {
            "projection": draw(st.integers(0, 2)),
            "limit": draw(st.integers(1, 4)),
        },
    }[kind]()
    return tenant, kind, payload


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step(), min_size=12, max_size=40))
async def test_after_any_commands_every_read_model_equals_a_fold_of_the_event_store(
    steps: list[tuple[int, str, dict[str, Any]]],
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    handler: CommandHandler,
    runners: list[ProjectionRunner],
) -> None:
    tenants = [new_tenant("fold"), new_tenant("fold")]
    for tenant in tenants:
        await send(handler, tenant, "CreateTenant", name="First")
    for user_id in USERS:  # so that most user commands have a user to act on
        await send(
            handler,
            tenants[0],
            "RegisterUser",
            user_id=user_id,
            email="r@x.example",
            display_name="R",
            roles=["member", "viewer"],
        )
    for index, kind, payload in steps:
        if kind == "CatchUp":
            await runners[payload["projection"]].run_batch(limit=payload["limit"])
        else:
            await send(handler, tenants[index], kind, **payload)
    await catch_up(runners, store)
    await assert_read_models_match_the_fold(pool, store, repository, tenants, runners)


async def test_on_committed_gets_the_tenants_whose_rows_changed(
    store: EventStore,
    handler: CommandHandler,
    runners: list[ProjectionRunner],
    committed: Committed,
) -> None:
    await catch_up(runners, store)
    committed.calls.clear()
    a, b = new_tenant(), new_tenant()
    await send(handler, a, "CreateTenant", name="A")
    await send(handler, b, "CreateTenant", name="B")
    await catch_up(runners, store)
    assert committed.tenants == {a, b}
    committed.calls.clear()
    await catch_up(runners, store)
    assert committed.calls == []  # nothing new, nothing to invalidate


async def test_lag_counts_the_events_not_yet_applied_and_the_age_of_the_oldest(
    store: EventStore, handler: CommandHandler, runners: list[ProjectionRunner]
) -> None:
    tenants_runner = runners[0]
    await catch_up(runners, store)
    assert (await tenants_runner.lag()).events == 0
    tenant = new_tenant()
    await send(handler, tenant, "CreateTenant", name="Lagging")
    for i in range(4):
        await send(handler, tenant, "RenameTenant", name=f"Lagging {i}")
    await visible(store)
    lag = await tenants_runner.lag()
    assert lag.events == 5 and lag.seconds > 0
    report = await tenants_runner.run_batch(limit=2)
    assert (report.applied, report.lag.events) == (2, 3)
    report = await tenants_runner.catch_up()
    assert (report.lag.events, report.lag.seconds, report.caught_up) == (0, 0.0, True)
    assert report.position == report.lag.head == await store.head()


async def test_a_backlog_is_worked_through_for_a_time_then_reported_and_taken_up_again(
    store: EventStore,
    handler: CommandHandler,
    runners: list[ProjectionRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenants_runner = runners[0]
    await catch_up(runners, store)
    tenant = new_tenant()
    await send(handler, tenant, "CreateTenant", name="Backlog")
    for i in range(9):
        await send(handler, tenant, "RenameTenant", name=f"Backlog {i}")
    await visible(store)
    beats: list[None] = []

    # No time at all for the backlog: the first batch, then back with the lag left.
    monkeypatch.setattr(waiting, "CATCH_UP_BUDGET_SECONDS", 0.0)
    report = await tenants_runner.run_batches(limit=2, heartbeat=lambda: beats.append(None))
    assert (report.applied, report.lag.events, report.caught_up) == (2, 8, False)
    # Time enough: the pipelined catch-up takes the rest, one heartbeat a batch (batches of
    # 2 here; of BACKLOG_BATCH events at least, by default).
    monkeypatch.setattr(waiting, "CATCH_UP_BUDGET_SECONDS", 10.0)
    monkeypatch.setattr(waiting, "BACKLOG_BATCH", 2)
    beats.clear()
    report = await tenants_runner.run_batches(limit=2, heartbeat=lambda: beats.append(None))
    assert (report.applied, report.lag.events, report.caught_up) == (8, 0, True)
    assert len(beats) >= 4
    assert report.position == await store.head()


# -- exactly once, never skipping ---------------------------------------------------------


async def test_a_batch_whose_session_dies_mid_transaction_applies_nothing_then_all_once(
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    handler: CommandHandler,
    runners: list[ProjectionRunner],
    database_url: str,
) -> None:
    tenants_runner = runners[0]
    blocked = new_tenant("blocked")
    await send(handler, blocked, "CreateTenant", name="Blocked")
    await catch_up(runners, store)
    before = await tenants_runner.get_position()
    others = [new_tenant("other") for _ in range(20)]
    for tenant in others:  # applied first in the batch, then the blocked row's rename
        await send(handler, tenant, "CreateTenant", name="Other")
    await send(handler, blocked, "RenameTenant", name="Renamed")

    async with await psycopg.AsyncConnection.connect(database_url) as locker:
        # Hold the blocked row: the batch applies 20 inserts, then waits on the rename.
        await locker.execute(
            "SELECT 1 FROM read_models.tenants WHERE tenant_id = %s FOR UPDATE", (blocked,)
        )
        batch = asyncio.create_task(tenants_runner.run_batch(limit=1_000))

        async def waiting_backend() -> int | None:
            cur = await locker.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            row = await cur.fetchone()
            return int(row[0]) if row else None

        pid = await eventually(waiting_backend, within=10, what="the batch to block mid-way")
        # The worker "dies": PostgreSQL loses its session in the middle of the transaction.
        await locker.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(ReadModelUnavailableError):
            await batch
        await locker.rollback()

    assert await tenants_runner.get_position() == before
    assert (await read_model_rows(pool, others))["tenants"] == []
    await catch_up(runners, store)
    await assert_read_models_match_the_fold(pool, store, repository, [blocked, *others], runners)


async def test_a_late_committing_transaction_reaches_every_read_model(
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    handler: CommandHandler,
    runners: list[ProjectionRunner],
    database_url: str,
) -> None:
    late, early = new_tenant("late"), new_tenant("early")
    await catch_up(runners, store)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        command_id = uuid.uuid4()
        data = {"name": "Late", "settings": TenantSettings().model_dump(mode="json")}
        # Begun (and given its transaction id) before the commands below, committed after.
        await conn.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, command_id)"
            " VALUES (%s, %s, %s, 'Tenant', 1, 'TenantCreated', 1, %s, %s)",
            (uuid.uuid5(command_id, "0"), late, late, json.dumps(data), command_id),
        )
        await send(handler, early, "CreateTenant", name="Early")
        await send(
            handler, early, "RegisterUser", user_id="u1", email="u1@x.example", display_name="U"
        )
        await catch_up(runners)
        # Held back, not passed over: neither the late event nor anything after it is applied.
        assert (await read_model_rows(pool, [late, early]))["tenants"] == []
        await conn.commit()
    await catch_up(runners, store)
    rows = await read_model_rows(pool, [late, early])
    assert {r["tenant_id"] for r in rows["tenants"]} == {late, early}
    assert {r["tenant_id"] for r in rows["tenant_activity"]} == {late, early}
    assert [r["user_id"] for r in rows["users"]] == ["u1"]
    await assert_read_models_match_the_fold(pool, store, repository, [late, early], runners)


async def test_two_runners_of_one_projection_at_once_apply_each_event_once(
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    handler: CommandHandler,
    runners: list[ProjectionRunner],
) -> None:
    await catch_up(runners, store)
    tenant = new_tenant("race")
    await send(handler, tenant, "CreateTenant", name="Race")
    for i in range(30):
        await send(
            handler,
            tenant,
            "RegisterUser",
            user_id=f"u{i}",
            email=f"u{i}@x.example",
            display_name="U",
        )
    twin = ProjectionRunner(runners[2].projection, store)  # tenant_activity: counts would double
    await asyncio.gather(
        *(r.catch_up(limit=3) for r in (runners[2], twin, runners[2], twin)),
    )
    await catch_up(runners, store)
    await assert_read_models_match_the_fold(pool, store, repository, [tenant], runners)


async def test_projections_catching_up_together_read_each_page_once_and_equal_the_fold(
    pool: AsyncConnectionPool,
    store: EventStore,
    repository: AggregateRepository,
    handler: CommandHandler,
    runners: list[ProjectionRunner],
) -> None:
    await catch_up(runners, store)
    before = await runners[0].get_position()
    tenant = new_tenant("together")
    await send(handler, tenant, "CreateTenant", name="Together")
    for i in range(20):
        user = {"user_id": f"u{i}"}
        await send(handler, tenant, "RegisterUser", **user, email=f"{i}@x.io", display_name="U")
        await send(handler, tenant, "AssignRole", **user, role="admin")
    await visible(store)
    backlog = len(await store.read_all(before, limit=1_000))
    log = SharedLog(store, page_size=8)
    together = [ProjectionRunner(r.projection, store, shared_log=log) for r in runners]
    reports = await asyncio.gather(*(r.catch_up(limit=3) for r in together))
    assert [r.applied for r in reports] == [backlog] * 3
    assert all(r.caught_up for r in reports)
    assert log.reads == math.ceil(backlog / 8)  # each page once, for the three of them
    await assert_read_models_match_the_fold(pool, store, repository, [tenant], runners)


# -- failing events are parked, never dropped ------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def seen_table(pool: AsyncConnectionPool) -> None:
    await create_seen_table(pool)


async def test_a_failing_event_is_parked_and_pauses_a_pause_projection_until_retried(
    seen_table: None, pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    tenant = new_tenant("flaky")
    projection = FlakyPause({tenant})
    runner = ProjectionRunner(projection, store)
    await runner.catch_up()
    await send(handler, tenant, "CreateTenant", name="Flaky")
    await send(handler, tenant, "RenameTenant", name="Poison")
    await send(handler, tenant, "RenameTenant", name="After")
    created, poison, after = await store.read_stream(tenant, tenant)
    projection.poisoned.add("Poison")

    report = await runner.catch_up()
    assert report.failure is not None and report.failure.event_id == poison.event_id
    assert "ValueError: poisoned TenantRenamed 'Poison'" in report.failure.error
    assert report.position == created.position  # everything before it is applied
    assert await runner.dead_letters.list(projection="flaky_pause") == []

    # The last attempt parks it and pauses the projection there.
    report = await runner.run_batch(park=poison.event_id, attempts=3)
    assert report.parked is not None and report.parked.event_id == poison.event_id
    assert report.paused and report.failure is None
    assert report.position == created.position
    assert report.last_error and "parked event" in report.last_error
    (letter,) = await runner.dead_letters.list(projection="flaky_pause")
    assert (letter.event_id, letter.attempts, letter.resolution) == (poison.event_id, 3, None)
    assert (await runner.run_batch()).applied == 0  # paused: nothing moves

    with pytest.raises(ProjectionError, match="failed again"):
        await runner.retry_dead_letter(poison.event_id)
    (letter,) = await runner.dead_letters.list(projection="flaky_pause")
    assert letter.attempts == 4 and letter.open

    projection.poisoned.clear()  # the bug is fixed
    retries = await asyncio.gather(
        runner.retry_dead_letter(poison.event_id),
        runner.retry_dead_letter(poison.event_id),
        return_exceptions=True,
    )
    applied = [r for r in retries if isinstance(r, int)]
    refused = [r for r in retries if isinstance(r, Exception)]
    assert applied == [1]
    assert len(refused) == 1 and "already retried" in str(refused[0])
    assert await runner.get_position() == poison.position  # moved past it, still paused
    assert (await runner.checkpoints.get("flaky_pause")).paused

    await runner.checkpoints.set_status("flaky_pause", "running")  # resume
    await runner.catch_up()
    assert await seen(pool, "flaky_pause", tenant) == {
        e.event_id: 1 for e in (created, poison, after)
    }
    assert await runner.dead_letters.list(projection="flaky_pause") == []
    (resolved,) = await runner.dead_letters.list(projection="flaky_pause", include_resolved=True)
    assert resolved.resolution == "retried" and resolved.resolved_at is not None


async def test_a_refused_event_is_parked_and_a_skip_projection_goes_on(
    seen_table: None, pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    tenant = new_tenant("skip")
    projection = FlakySkip({tenant})
    runner = ProjectionRunner(projection, store)
    await runner.catch_up()
    await send(handler, tenant, "CreateTenant", name="Skip")
    await send(handler, tenant, "RenameTenant", name="Refused")
    await send(handler, tenant, "RenameTenant", name="After")
    created, refused, after = await store.read_stream(tenant, tenant)
    projection.refused.add("Refused")

    report = await runner.catch_up()
    # The database refused one change of a batch of three: the rest of the batch was replayed
    # event by event to find whose.
    assert report.failure is not None and report.failure.event_id == refused.event_id
    assert "NotNullViolation" in report.failure.error
    assert await seen(pool, "flaky_skip", tenant) == {created.event_id: 1}

    report = await runner.run_batch(park=refused.event_id, attempts=2)
    assert report.parked is not None and not report.paused and report.last_error is None
    await runner.catch_up()
    assert await seen(pool, "flaky_skip", tenant) == {created.event_id: 1, after.event_id: 1}

    await runner.skip_dead_letter(refused.event_id)
    with pytest.raises(ProjectionError, match="already skipped"):
        await runner.skip_dead_letter(refused.event_id)
    with pytest.raises(NotFoundError):
        await runner.retry_dead_letter(uuid.uuid4())
    (letter,) = await runner.dead_letters.list(projection="flaky_skip", include_resolved=True)
    assert letter.resolution == "skipped"
    assert await seen(pool, "flaky_skip", tenant) == {created.event_id: 1, after.event_id: 1}


class _Trespassing(FlakyPause):
    """Writes a row of ``tenants`` (not one of its tables) for each rename of its tenants."""

    name = "trespassing"

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        changes = super().handle_event(event)
        if event.event_type == "TenantRenamed" and changes:  # one of its tenants' (Flaky)
            changes.append(Update("tenants", {"tenant_id": event.tenant_id}, {"name": "stolen"}))
        return changes


async def test_a_change_to_a_table_not_its_projections_fails_its_event_and_writes_nothing(
    seen_table: None, pool: AsyncConnectionPool, store: EventStore, handler: CommandHandler
) -> None:
    tenant = new_tenant("trespass")
    runner = ProjectionRunner(_Trespassing({tenant}), store)
    await runner.catch_up()
    await send(handler, tenant, "CreateTenant", name="Own")
    await send(handler, tenant, "RenameTenant", name="Renamed")
    created, renamed = await store.read_stream(tenant, tenant)

    report = await runner.catch_up()
    assert report.failure is not None and report.failure.event_id == renamed.event_id
    assert "may not write read_models.tenants" in report.failure.error
    assert report.position == created.position  # the event before it is applied, it is not
    assert await seen(pool, "trespassing", tenant) == {created.event_id: 1}
