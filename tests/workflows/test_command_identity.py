"""Command identity, conflicts under load and the seat rule, through the users' own doors.

The ``acci`` CLI as a process, the client API and a plain Temporal start, against the real dev
server, PostgreSQL and RabbitMQ.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from acci.domain.errors import CommandValidationError, DomainError
from acci.eventstore.store import EventStore
from acci.workers.runtime import open_event_store
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result, execute_command, start_command
from tests.conftest import database_url_for, drop_database
from tests.workflows.conftest import unique, worker_env
from tests.workflows.helpers import OPERATOR_JSON, command, send
from tests.workflows.test_operator_doors import ACCI, run

REUSED = "was already used for a different command"


async def test_a_command_id_reused_for_another_tenant_is_refused_by_the_cli(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    first, second = unique("id-cli-a"), unique("id-cli-b")
    env = worker_env(settings)
    command_id = str(uuid.uuid4())

    async def create(tenant: str, name: str) -> tuple[int, str, str]:
        args = ["tenant", "create", "--tenant", tenant, "--name", name, "--command-id", command_id]
        return await run([ACCI, *args], env)

    code, out, err = await create(first, "Secret A")
    assert code == 0, err
    code, out, err = await create(second, "B")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error (validation): ") and REUSED in lines[0]
    # Nothing of the first command is disclosed, and B was not created.
    assert first not in out + err and "Secret A" not in out + err
    assert await store.read_stream(second, second) == []
    # The same command sent again is a re-send, answered with its first result.
    code, out, _ = await create(first, "Secret A")
    assert code == 0 and "re-sent" in out
    assert len(await store.read_stream(first, first)) == 1


async def test_a_command_id_reused_with_another_payload_is_refused_by_the_client_api(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    q, t = settings.task_queue, unique("id-api")
    create = command(t, "CreateTenant", name="First")
    await execute_command(worker, create, task_queue=q)
    other = create.model_copy(update={"payload": {"name": "Second"}})
    with pytest.raises(CommandValidationError, match=REUSED):
        await execute_command(worker, other, task_queue=q)
    # Another type, same id.
    rename = create.model_copy(update={"command_type": "RenameTenant", "payload": {"name": "X"}})
    with pytest.raises(CommandValidationError, match=REUSED):
        await execute_command(worker, rename, task_queue=q)
    assert [e.data["name"] for e in await store.read_stream(t, t)] == ["First"]


async def test_a_send_racing_a_running_run_of_another_command_waits_and_asks_the_store(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    # Of two senders racing with one id, the loser's run may still be going when the winner
    # sends again: that send waits for it to end, then the store answers. Here the other run is
    # held on a queue no worker polls, and ends (terminated) while the send waits.
    idle_queue = f"acci-test-idle-{uuid.uuid4().hex[:8]}"
    t = unique("id-race")
    await execute_command(
        worker, command(t, "CreateTenant", name="Before"), task_queue=settings.task_queue
    )
    held = command(t, "RenameTenant", name="RaceA")
    ours = held.model_copy(update={"payload": {"name": "RaceB"}})
    first = await start_command(worker, held, task_queue=idle_queue)
    sending = asyncio.ensure_future(
        start_command(worker, ours, task_queue=settings.task_queue, other_run_wait=60)
    )
    await asyncio.sleep(1.0)
    assert not sending.done()
    await first.handle.terminate(reason="the race's other run ends")
    sent = await sending
    assert not sent.resent
    result = await command_result(sent.handle)
    assert not result.duplicate and result.stream_version == 2
    renamed = (await store.read_stream(t, t))[-1]
    assert (renamed.event_type, renamed.data["new_name"]) == ("TenantRenamed", "RaceB")
    # The held command, sent again, is now refused by the store: the id is RaceB's.
    with pytest.raises(CommandValidationError, match=REUSED):
        await execute_command(worker, held, task_queue=settings.task_queue)


async def test_a_command_id_reused_under_another_workflow_id_is_refused_by_a_plain_start(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    q, first, second = settings.task_queue, unique("id-plain-a"), unique("id-plain-b")
    create = command(first, "CreateTenant", name="A")
    await execute_command(worker, create, task_queue=q)
    raw = {
        "command_id": str(create.command_id),
        "tenant_id": second,
        "command_type": "CreateTenant",
        "payload": {"name": "B"},
        "principal": OPERATOR_JSON,
    }
    # A plain Temporal client, any workflow id: the store recognises the command id.
    with pytest.raises(WorkflowFailureError) as failed:
        await worker.execute_workflow(
            "CommandWorkflow", raw, id=f"plain-{uuid.uuid4()}", task_queue=q
        )
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "CommandValidationError" and cause.non_retryable
    assert REUSED in cause.message and first not in cause.message
    assert await store.read_stream(second, second) == []


async def test_a_command_whose_events_are_not_in_this_store_runs_against_it(
    worker: Client, settings: Settings, temporal_env: WorkflowEnvironment
) -> None:
    """Temporal remembers a finished run; a fresh database does not have its events."""
    t = unique("id-fresh")
    create = command(t, "CreateTenant", name="Remembered")
    first = await execute_command(worker, create, task_queue=settings.task_queue)
    assert not first.duplicate

    fresh_url = database_url_for(f"acci_t_identity_fresh_{uuid.uuid4().hex[:8]}")
    fresh = settings.model_copy(
        update={
            "database_url": SecretStr(fresh_url),
            "task_queue": f"acci-test-{uuid.uuid4().hex[:8]}",
        }
    )
    # A worker of its own, as a process (one in-process worker per test process).
    process = await asyncio.create_subprocess_exec(ACCI, "worker", env=worker_env(fresh))
    try:
        again = await asyncio.wait_for(
            execute_command(worker, create, task_queue=fresh.task_queue), 120
        )
        async with open_event_store(fresh) as rt:
            stored = await rt.store.read_stream(t, t)
        # Not "re-sent: first result": the command ran against the store that lacked it.
        assert not again.duplicate
        assert [e.event_id for e in stored] == again.event_ids
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        drop_database(fresh_url)


async def test_thirty_concurrent_renames_released_together_all_succeed(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    q, t = settings.task_queue, unique("id-thirty")
    await send(worker, q, t, "CreateTenant", name="Name 0")
    go = asyncio.Event()

    async def rename(i: int) -> object:
        await go.wait()
        return await send(worker, q, t, "RenameTenant", name=f"Name {i}")

    tasks = [asyncio.create_task(rename(i)) for i in range(1, 31)]
    go.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    stream = await store.read_stream(t, t)
    assert [e.sequence_number for e in stream] == list(range(1, 32))
    assert {e.data["new_name"] for e in stream[1:]} == {f"Name {i}" for i in range(1, 31)}


async def test_max_users_holds_under_twenty_concurrent_registrations(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    q, t = settings.task_queue, unique("id-seats")
    await send(worker, q, t, "CreateTenant", name="Five Seats", settings={"max_users": 5})
    outcomes = await asyncio.gather(
        *(
            send(
                worker,
                q,
                t,
                "RegisterUser",
                user_id=f"u{i}",
                email=f"u{i}@seats.example",
                display_name=f"U {i}",
            )
            for i in range(20)
        ),
        return_exceptions=True,
    )
    ok = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(ok) == 5
    assert len(refused) == 15
    assert all(isinstance(e, DomainError) and e.reason == "user_limit_reached" for e in refused)
    registered = [
        i for i in range(20) if [e.event_type for e in await store.read_stream(t, f"u{i}")]
    ]
    assert len(registered) == 5
    tenant_stream = [e.event_type for e in await store.read_stream(t, t)]
    assert tenant_stream.count("UserSeatReserved") == 5

    # A deactivation frees a seat for the next registration.
    await send(worker, q, t, "DeactivateUser", user_id=f"u{registered[0]}", reason="left")
    await send(
        worker,
        q,
        t,
        "RegisterUser",
        user_id="late",
        email="late@seats.example",
        display_name="Late",
    )
    with pytest.raises(DomainError, match="max_users 5"):
        await send(
            worker,
            q,
            t,
            "RegisterUser",
            user_id="later",
            email="l@seats.example",
            display_name="Later",
        )


async def test_a_user_may_share_its_tenants_id(
    worker: Client, settings: Settings, store: EventStore
) -> None:
    q, t = settings.task_queue, unique("id-same")
    await send(worker, q, t, "CreateTenant", name="Same")
    user = await send(
        worker, q, t, "RegisterUser", user_id=t, email="s@same.example", display_name="Same"
    )
    # Streams of different aggregate types never collide: the user's stream is its own.
    assert (user.aggregate_type, user.stream_version) == ("User", 1)
    renamed = await send(worker, q, t, "RenameTenant", name="Same Again")
    assert (renamed.aggregate_type, renamed.stream_version) == ("Tenant", 3)  # with the seat
    users = await store.read_stream(t, t, aggregate_type="User")
    assert [e.event_type for e in users] == ["UserRegistered"]
    env = worker_env(settings)
    code, out, err = await run([ACCI, "aggregate", t, "--tenant", t, "--type", "User"], env)
    assert code == 0, err
    assert json.loads(out)["state"]["email"] == "s@same.example"
    code, out, err = await run([ACCI, "aggregate", t, "--tenant", t], env)
    assert code == 1 and "several types" in err and "--type" in err


async def test_an_input_temporal_refuses_for_its_size_is_a_validation_error(
    worker: Client, settings: Settings
) -> None:
    # Past the server's limit on a run's input (2 MB on the dev server): the client API says
    # which command was refused, as a validation error, instead of a bare RPCError.
    huge = command(unique("huge"), "CreateTenant", name="x" * 3_000_000)
    with pytest.raises(CommandValidationError, match="Temporal refused to start CreateTenant: "):
        await start_command(worker, huge, task_queue=settings.task_queue)
