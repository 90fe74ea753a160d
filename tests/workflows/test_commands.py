"""Commands as Temporal workflows against the real dev server, PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from acci.activities.models import command_workflow_id
from acci.domain.errors import CommandValidationError, DomainError
from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result, execute_command, start_command
from acci.workers.worker import workflow_runner
from acci.workflows.command import CommandWorkflow
from tests.workflows.conftest import Captured, eventually, unique
from tests.workflows.helpers import command, send
from tests.workflows.test_operator_doors import temporal_execute

UPSERT = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES


async def test_every_command_lands_in_the_store_and_on_rabbitmq(
    worker: Client, settings: Settings, store: EventStore, captured: Captured
) -> None:
    q, t = settings.task_queue, unique("wf-every")
    results = [
        await send(worker, q, t, "CreateTenant", name="Every Corp"),
        await send(worker, q, t, "RenameTenant", name="Every Corporation"),
        await send(worker, q, t, "UpdateTenantSettings", settings={"max_users": 5}),
        await send(
            worker,
            q,
            t,
            "RegisterUser",
            user_id="u1",
            email="u1@every.example",
            display_name="U One",
        ),
        await send(worker, q, t, "ChangeUserEmail", user_id="u1", email="one@every.example"),
        await send(worker, q, t, "AssignRole", user_id="u1", role="admin"),
        await send(worker, q, t, "RevokeRole", user_id="u1", role="member"),
        await send(worker, q, t, "DeactivateUser", user_id="u1", reason="left"),
        await send(worker, q, t, "SuspendTenant", reason="audit"),
        await send(worker, q, t, "ReactivateTenant"),
        await send(worker, q, t, "DeleteTenant", reason="closed"),
    ]
    # The registration took a seat on the tenant's stream and the deactivation freed it.
    tenant_versions = [r.stream_version for r in results if r.aggregate_type == "Tenant"]
    assert tenant_versions == [1, 2, 3, 6, 7, 8]
    assert [r.stream_version for r in results if r.aggregate_type == "User"] == list(range(1, 6))
    stored = await store.read_stream(t, t) + await store.read_stream(t, "u1")
    seats = [e for e in stored if e.event_type in ("UserSeatReserved", "UserSeatReleased")]
    assert [(e.event_type, e.data) for e in seats] == [
        ("UserSeatReserved", {"user_id": "u1"}),
        ("UserSeatReleased", {"user_id": "u1"}),
    ]
    # Each result lists every event its command stored, the seats on the tenant's stream too,
    # in global order, where the store put them: its position (the last) covers them all.
    assert sorted(i for r in results for i in r.event_ids) == sorted(e.event_id for e in stored)
    by_id = {e.event_id: e for e in stored}
    for r in results:
        assert [str(by_id[i].position) for i in r.event_ids] == r.positions
        assert [by_id[i].global_position for i in r.event_ids] == r.global_positions
        assert r.position == str(max(by_id[i].position for i in r.event_ids))
    registered = results[3]
    assert [by_id[i].event_type for i in registered.event_ids] == [
        "UserRegistered",
        "UserSeatReserved",
    ]
    assert (registered.aggregate_type, registered.stream_version) == ("User", 1)

    await captured.wait_for({str(e.event_id) for e in stored})
    assert len(captured.message_ids(t)) == len(stored)
    for routing_key, props, body in captured.messages:
        if not routing_key.startswith(f"{t}."):
            continue
        event = by_id[uuid.UUID(props.message_id)]
        assert routing_key == f"{t}.{event.aggregate_type}.{event.event_type}"
        assert props.delivery_mode == 2
        assert json.loads(body)["data"] == event.data


async def test_a_rejected_command_fails_typed_and_writes_and_publishes_nothing(
    worker: Client, settings: Settings, store: EventStore, captured: Captured
) -> None:
    q, t = settings.task_queue, unique("wf-rejected")
    await send(worker, q, t, "CreateTenant", name="Rejecting")

    with pytest.raises(CommandValidationError, match="email"):
        await send(worker, q, t, "RegisterUser", user_id="x", email="nope", display_name="X")
    with pytest.raises(CommandValidationError, match="unknown command type"):
        await send(worker, q, t, "LaunchRockets")
    with pytest.raises(CommandValidationError, match="tenant id"):
        await send(worker, q, "x'; DROP TABLE event_store.events;--", "CreateTenant", name="X")
    await send(worker, q, t, "SuspendTenant", reason="first")
    with pytest.raises(DomainError, match="only an active tenant can be suspended") as caught:
        await send(worker, q, t, "SuspendTenant", reason="again")
    assert caught.value.reason == "tenant_not_active"
    with pytest.raises(DomainError) as refused:
        await send(
            worker, q, t, "RegisterUser", user_id="y", email="y@ex.example", display_name="Y"
        )
    assert refused.value.reason == "tenant_not_active"

    stored = await store.read_stream(t, t)
    assert [e.event_type for e in stored] == ["TenantCreated", "TenantSuspended"]
    assert await store.read_stream(t, "x") == await store.read_stream(t, "y") == []
    # A run publishes before it completes, and the rejected runs have completed: the only
    # messages are those of the two accepted commands.
    await captured.wait_for({str(e.event_id) for e in stored})
    assert sorted(captured.message_ids(t)) == sorted(str(e.event_id) for e in stored)


async def test_twenty_commands_at_once_on_one_aggregate_keep_the_stream_contiguous(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    q, t = settings.task_queue, unique("wf-twenty")
    await send(worker, q, t, "CreateTenant", name="Name 0")
    outcomes = await asyncio.gather(
        *(send(worker, q, t, "RenameTenant", name=f"Name {i}") for i in range(1, 21)),
        return_exceptions=True,
    )
    # Conflicts are retried with jittered backoff within a time budget: all twenty go through.
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures == []
    successes = [o for o in outcomes if not isinstance(o, BaseException)]
    stream = await store.read_stream(t, t)
    assert [e.sequence_number for e in stream] == list(range(1, len(stream) + 1))
    # No update is lost: every success is in the stream, at the version it reported.
    assert len(stream) == 1 + len(successes)
    assert sorted(r.stream_version for r in successes) == list(range(2, len(stream) + 1))
    # Each rename was decided against the state before it.
    for before, after in itertools.pairwise(stream):
        if after.event_type == "TenantRenamed" and before.event_type == "TenantRenamed":
            assert after.data["old_name"] == before.data["new_name"]


async def test_the_same_command_id_twice_at_once_and_after_completion_is_stored_once(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    q, t = settings.task_queue, unique("wf-twice")
    create = command(t, "CreateTenant", name="Twice")
    together = await asyncio.gather(
        *(execute_command(worker, create, task_queue=q) for _ in range(5))
    )
    first = together[0]
    assert {(tuple(r.event_ids), tuple(r.positions)) for r in together} == {
        (tuple(first.event_ids), tuple(first.positions))
    }
    later = await execute_command(worker, create, task_queue=q)
    # A finished run is not trusted for the answer: a new run asks the store, which has it.
    assert later.duplicate
    assert (later.event_ids, later.positions) == (first.event_ids, first.positions)
    assert len(await store.read_stream(t, t)) == 1


async def test_search_attributes_find_a_tenants_commands(
    worker: Client, settings: Settings
) -> None:
    q, t = settings.task_queue, unique("wf-search")
    created = await send(worker, q, t, "CreateTenant", name="Searchable")
    sent = await start_command(worker, command(t, "RenameTenant", name="Found"), task_queue=q)
    await sent.handle.result()

    async def the_tenants_runs() -> list[str] | None:
        ids = [w.id async for w in worker.list_workflows(f"TenantId = '{t}'")]
        return ids if len(ids) == 2 else None

    ids = await eventually(the_tenants_runs, what="the tenant's two runs in visibility")
    assert set(ids) == {command_workflow_id(created.command_id), sent.handle.id}
    description = await sent.handle.describe()
    attrs = {pair.key.name: pair.value for pair in description.typed_search_attributes}
    ours = {name: attrs.get(name) for name in ("TenantId", "AggregateId", "CommandType")}
    assert ours == {"TenantId": t, "AggregateId": t, "CommandType": "RenameTenant"}
    # start_command set them at the start: the run upserted nothing.
    assert await upserts(sent.handle) == 0


async def test_a_plain_temporal_start_gets_its_search_attributes_from_the_workflow(
    worker: Client, settings: Settings
) -> None:
    q, t = settings.task_queue, unique("wf-plain-search")
    await send(worker, q, t, "CreateTenant", name="Plain")
    register = command(
        t, "RegisterUser", user_id="u-plain", email="p@plain.example", display_name="P"
    )
    raw = register.model_dump(mode="json")
    # `temporal workflow execute` with no --search-attribute, as the README shows it.
    code, out, err = await temporal_execute(settings, f"cmd-{register.command_id}", raw)
    assert code == 0, out + err
    handle = worker.get_workflow_handle(f"cmd-{register.command_id}")

    async def found() -> list[str] | None:
        query = f"TenantId = '{t}' AND AggregateId = 'u-plain' AND CommandType = 'RegisterUser'"
        ids = [w.id async for w in worker.list_workflows(query)]
        return ids or None

    assert await eventually(found, what="the plain start in visibility") == [handle.id]
    # The workflow set what its start lacked: tenant and type at once, the aggregate once known.
    assert await upserts(handle) == 2
    # Both doors' histories replay on this code (the upserts depend only on the history).
    client_started = await start_command(
        worker, command(t, "RenameTenant", name="P2"), task_queue=q
    )
    await command_result(client_started.handle)
    replayer = Replayer(
        workflows=[CommandWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    for each in (handle, client_started.handle):
        await replayer.replay_workflow(await each.fetch_history())


async def upserts(handle: WorkflowHandle[object, object]) -> int:
    """How many search-attribute upserts the run's history holds."""
    history = await handle.fetch_history()
    return sum(e.event_type == UPSERT for e in history.events)
