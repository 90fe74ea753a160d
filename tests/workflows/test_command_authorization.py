"""Commands sent as principals, through Temporal with a real worker: a denied command fails once
with a non-retryable AuthorizationError, writes nothing, publishes nothing and is audited; an
accepted command's events (stored and on RabbitMQ) name who sent it; every outcome is audited
once."""

from __future__ import annotations

import json
import uuid

import pytest
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from acci.activities.models import CommandInput
from acci.domain.errors import AuthorizationError, CommandValidationError, DomainError
from acci.domain.principals import Principal
from acci.eventstore.audit import AuditEntry, AuditFilter, AuditLog
from acci.eventstore.errors import CommandIdReusedError
from acci.eventstore.store import EventStore
from acci.workers.settings import Settings
from acci.workers.temporal_client import execute_command, start_command
from tests.workflows.conftest import Captured, unique, worker_env
from tests.workflows.helpers import command, send
from tests.workflows.test_operator_doors import ACCI, run


def member(tenant: str, name: str = "eve") -> Principal:
    return Principal(id=name, tenant_id=tenant, roles=frozenset({"member"}))


def admin(tenant: str, name: str = "ann") -> Principal:
    return Principal(id=name, tenant_id=tenant, roles=frozenset({"admin"}))


async def audited(pool: AsyncConnectionPool, tenant: str) -> list[AuditEntry]:
    """The tenant's audit rows, oldest first."""
    return list(reversed(await AuditLog(pool).entries(AuditFilter(tenant_id=tenant, limit=1000))))


def denials(command_type: str) -> float:
    value = REGISTRY.get_sample_value(
        "acci_commands_total", {"command_type": command_type, "outcome": "authorization"}
    )
    return value or 0.0


async def denied(client: Client, task_queue: str, sent: CommandInput) -> ApplicationError:
    """Run ``sent``; the ApplicationError its run failed with."""
    handle = (await start_command(client, sent, task_queue=task_queue)).handle
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_a_denied_command_fails_once_writes_and_publishes_nothing_and_is_audited(
    worker: Client,
    settings: Settings,
    store: EventStore,
    pool: AsyncConnectionPool,
    captured: Captured,
) -> None:
    q, t = settings.task_queue, unique("authz-denied")
    await send(worker, q, t, "CreateTenant", name="Denying")
    before = denials("RenameTenant")

    refused = command(t, "RenameTenant", principal=member(t), name="Eve's")
    cause = await denied(worker, q, refused)
    assert (cause.type, cause.non_retryable) == ("AuthorizationError", True)
    assert "eve@" in cause.message and "needs one of admin, owner" in cause.message
    # One attempt: non-retryable, so the worker ran the activity once.
    assert denials("RenameTenant") - before == 1
    # The typed error a client catches.
    with pytest.raises(AuthorizationError, match="acts only in its own tenant"):
        await execute_command(
            worker, command(t, "RenameTenant", principal=admin("globex"), name="G"), task_queue=q
        )

    # Nothing written; and nothing published: an accepted command after it is the only one
    # on the queue besides the creation (a run publishes before it completes).
    await send(worker, q, t, "RenameTenant", name="Renamed by the operator")
    stored = await store.read_stream(t, t)
    assert [e.event_type for e in stored] == ["TenantCreated", "TenantRenamed"]
    assert "Renamed by the operator" in stored[1].data.values()
    await captured.wait_for({str(e.event_id) for e in stored})
    assert sorted(captured.message_ids(t)) == sorted(str(e.event_id) for e in stored)

    rows = await audited(pool, t)
    # The cross-tenant attempt is audited in the tenant it was sent to.
    assert [(r.outcome, r.principal) for r in rows] == [
        ("accepted", "tests@system"),
        ("denied", f"eve@{t}"),
        ("denied", "ann@globex"),
        ("accepted", "tests@system"),
    ]
    row = rows[1]
    assert (row.command_id, row.command_type) == (refused.command_id, "RenameTenant")
    assert (row.aggregate_type, row.aggregate_id, row.error_type) == (
        "Tenant",
        t,
        "AuthorizationError",
    )
    assert row.principal_roles == ["member"] and row.reason == cause.message
    assert row.workflow_id == f"cmd-{refused.command_id}"


async def test_a_command_without_a_principal_is_denied_and_audited_as_nobodys(
    worker: Client, settings: Settings, store: EventStore, pool: AsyncConnectionPool
) -> None:
    q, t = settings.task_queue, unique("authz-nobody")
    anonymous = command(t, "CreateTenant", principal=None, name="Nobody's")
    cause = await denied(worker, q, anonymous)
    assert (cause.type, cause.non_retryable) == ("AuthorizationError", True)
    assert "names no principal" in cause.message
    assert await store.read_stream(t, t) == []
    [row] = await audited(pool, t)
    assert (row.outcome, row.principal_id, row.command_id) == ("denied", None, anonymous.command_id)


async def test_an_accepted_commands_events_name_their_sender_in_the_store_and_on_rabbitmq(
    worker: Client,
    settings: Settings,
    store: EventStore,
    pool: AsyncConnectionPool,
    captured: Captured,
) -> None:
    q, t = settings.task_queue, unique("authz-actor")
    await send(worker, q, t, "CreateTenant", name="Acting")
    ann = admin(t)
    register = command(
        t,
        "RegisterUser",
        principal=ann,
        user_id="bob",
        email="bob@acting.example",
        display_name="Bob",
    )
    result = await execute_command(worker, register, task_queue=q)
    # The registration and the seat it took on the tenant's stream: both were Ann's doing.
    events = await store.command_events(t, register.command_id)
    assert {e.event_type for e in events} == {"UserRegistered", "UserSeatReserved"}
    actor = {"id": "ann", "tenant_id": t, "roles": ["admin"], "kind": "user"}
    assert all(e.metadata["actor"] == actor for e in events)
    # The result names the target stream's events; the seat event was published with them.
    await captured.wait_for({str(e.event_id) for e in events})
    with captured.lock:  # the drain thread appends to it
        received = list(captured.messages)
    # By message id: a publish retried after a lost confirm may deliver a message twice.
    bodies = {
        props.message_id: json.loads(body)
        for key, props, body in received
        if props.message_id in {str(e.event_id) for e in events}
    }.values()
    assert len(bodies) == len(events)
    assert all(body["metadata"]["actor"] == actor for body in bodies)

    # Re-sent twice: the first result each time, one `duplicate` row, no second `accepted`.
    for _ in range(2):
        again = await execute_command(worker, register, task_queue=q)
        assert again.duplicate and again.event_ids == result.event_ids
    rows = [r for r in await audited(pool, t) if r.command_id == register.command_id]
    assert [(r.outcome, r.principal, r.aggregate_type, r.aggregate_id) for r in rows] == [
        ("accepted", f"ann@{t}", "User", "bob"),
        ("duplicate", f"ann@{t}", "User", "bob"),
    ]
    assert rows[0].error_type is None and rows[0].reason is None


async def test_an_admin_may_not_deactivate_an_owner_and_nothing_is_written(
    worker: Client, settings: Settings, store: EventStore, pool: AsyncConnectionPool
) -> None:
    q, t = settings.task_queue, unique("authz-owner")
    await send(worker, q, t, "CreateTenant", name="Owned")
    await send(
        worker,
        q,
        t,
        "RegisterUser",
        user_id="olga",
        email="o@x.io",
        display_name="O",
        roles=["owner", "admin"],
    )
    await send(worker, q, t, "RegisterUser", user_id="bob", email="b@x.io", display_name="B")
    refused = command(t, "DeactivateUser", principal=admin(t), user_id="olga")
    cause = await denied(worker, q, refused)
    assert (cause.type, cause.non_retryable) == ("AuthorizationError", True)
    assert "the user is an owner of the tenant" in cause.message
    assert [e.event_type for e in await store.read_stream(t, "olga")] == ["UserRegistered"]
    # The same admin manages a member; an owner deactivates the owner.
    await execute_command(
        worker, command(t, "DeactivateUser", principal=admin(t), user_id="bob"), task_queue=q
    )
    owner = Principal(id="oscar", tenant_id=t, roles=frozenset({"owner"}))
    await execute_command(
        worker, command(t, "DeactivateUser", principal=owner, user_id="olga"), task_queue=q
    )
    assert [e.event_type for e in await store.read_stream(t, "olga")][-1] == "UserDeactivated"
    rows = [r for r in await audited(pool, t) if r.command_type == "DeactivateUser"]
    assert [(r.outcome, r.principal, r.aggregate_id) for r in rows] == [
        ("denied", f"ann@{t}", "olga"),
        ("accepted", f"ann@{t}", "bob"),
        ("accepted", f"oscar@{t}", "olga"),
    ]
    assert rows[0].reason == cause.message


async def test_rejected_commands_are_audited_with_their_reason(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    q, t = settings.task_queue, unique("authz-rejected")
    await send(worker, q, t, "CreateTenant", name="Rejecting")
    await send(worker, q, t, "SuspendTenant", reason="first")
    with pytest.raises(DomainError, match="only an active tenant can be suspended"):
        await send(worker, q, t, "SuspendTenant", reason="again")
    with pytest.raises(CommandValidationError, match="email"):
        await execute_command(
            worker,
            command(t, "ChangeUserEmail", principal=admin(t), user_id="x", email="nope"),
            task_queue=q,
        )
    rows = await audited(pool, t)
    assert [(r.outcome, r.command_type, r.error_type) for r in rows] == [
        ("accepted", "CreateTenant", None),
        ("accepted", "SuspendTenant", None),
        ("rejected", "SuspendTenant", "DomainError"),
        ("rejected", "ChangeUserEmail", "CommandValidationError"),
    ]
    assert rows[2].reason is not None and "only an active tenant" in rows[2].reason
    # Validation comes before the target is known: none is recorded.
    assert rows[3].aggregate_id is None and rows[3].principal == f"ann@{t}"


async def test_acci_sends_as_its_principal_and_as_the_one_given_with_as(
    worker: Client, settings: Settings, store: EventStore, pool: AsyncConnectionPool
) -> None:
    t = unique("authz-cli")
    env = worker_env(settings)
    code, _, err = await run([ACCI, "tenant", "create", "--tenant", t, "--name", "CLI"], env)
    assert code == 0, err
    rename = [ACCI, "tenant", "rename", "--tenant", t, "--name", "By Eve"]
    code, out, err = await run([*rename, "--as", f"eve@{t}:member"], env)
    assert (code, out) == (1, "")
    assert err.startswith("error (authorization): ") and "needs one of admin, owner" in err
    code, _, err = await run([*rename, "--as", "eve@acme:chief"], env)
    assert code == 2 and "error (usage): " in err and "unknown role(s) 'chief'" in err
    code, _, err = await run(rename, {**env, "ACCI_PRINCIPAL": f"ann@{t}:owner"})
    assert code == 0, err

    stored = await store.read_stream(t, t)
    assert [e.metadata["actor"]["id"] for e in stored] == ["cli", "ann"]
    assert stored[0].metadata["actor"]["roles"] == ["system_admin"]
    rows = await audited(pool, t)
    assert [(r.outcome, r.principal) for r in rows] == [
        ("accepted", "cli@system"),
        ("denied", f"eve@{t}"),
        ("accepted", f"ann@{t}"),
    ]


async def test_a_retried_run_of_the_same_command_id_adds_no_row(
    worker: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    q, t = settings.task_queue, unique("authz-again")
    refused = command(t, "CreateTenant", principal=member(t), name="Never")
    for _ in range(3):
        with pytest.raises(AuthorizationError):
            await execute_command(worker, refused, task_queue=q)
    created = command(t, "CreateTenant", command_id=uuid.uuid4(), name="Once")
    for _ in range(3):
        await execute_command(worker, created, task_queue=q)
    rows = await audited(pool, t)
    assert sorted((r.command_id == created.command_id, r.outcome) for r in rows) == [
        (False, "denied"),
        (True, "accepted"),
        (True, "duplicate"),
    ]


async def test_a_running_command_is_joined_only_by_its_own_sender(worker: Client) -> None:
    # No worker polls this queue: the run stays running while others try to join it.
    idle_queue = f"acci-test-idle-{uuid.uuid4().hex[:8]}"
    t = unique("authz-join")
    first = command(t, "RenameTenant", principal=admin(t), name="Mine")
    sent = await start_command(worker, first, task_queue=idle_queue)
    try:
        again = await start_command(worker, first, task_queue=idle_queue)
        assert again.resent and again.handle.id == sent.handle.id
        # The very same command from another principal gets nothing of the running one: it
        # waits for the run to end, and is refused if it does not.
        other = first.model_copy(update={"principal": admin(t, "mallory")})
        with pytest.raises(CommandIdReusedError):
            await start_command(worker, other, task_queue=idle_queue, other_run_wait=1.0)
    finally:
        await sent.handle.terminate(reason="test over")
