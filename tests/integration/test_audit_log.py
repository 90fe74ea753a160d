"""The audit log (migration 013, eventstore/audit.py, ``acci audit``) on the real PostgreSQL.

As acci_app (hand-written SQL, ``SET ROLE acci_app``): the log is append-only and a tenant's
transaction sees and writes only its own tenant's rows. Through the installed ``acci`` CLI:
filters, ``--json``, and who may read which tenant's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from acci.domain.principals import SYSTEM_ADMIN, Principal
from acci.eventstore.audit import AuditFilter, AuditLog, CommandAttempt
from acci.eventstore.db import create_pool
from acci.eventstore.errors import EventStoreError
from acci.workers.urls import app_database_url

ACCI = str(Path(sys.executable).with_name("acci"))
A, B = "audit-a", "audit-b"
ANN = Principal(id="ann", tenant_id=A, roles=frozenset({"admin"}))
EVE = Principal(id="eve", tenant_id=A, roles=frozenset({"member"}))
BOB = Principal(id="bob", tenant_id=B, roles=frozenset({"owner"}))
OPS = Principal(id="ops", roles=frozenset({SYSTEM_ADMIN}))


def attempt(
    tenant: str, principal: Principal | None, outcome: Any, **fields: Any
) -> CommandAttempt:
    return CommandAttempt(
        tenant_id=tenant,
        command_id=fields.pop("command_id", uuid.uuid4()),
        command_type=fields.pop("command_type", "RenameTenant"),
        outcome=outcome,
        principal=principal,
        aggregate_type="Tenant",
        aggregate_id=tenant,
        **fields,
    )


@pytest_asyncio.fixture(scope="module")
async def seeded(pool: AsyncConnectionPool) -> dict[str, CommandAttempt]:
    """One attempt of each kind, in two tenants, written as the owner."""
    log = AuditLog(pool)
    rows = {
        "accepted": attempt(A, ANN, "accepted"),
        "denied": attempt(
            A,
            EVE,
            "denied",
            error_type="AuthorizationError",
            reason="eve@audit-a (roles: member) may not send RenameTenant",
        ),
        "anonymous": attempt(A, None, "denied", error_type="AuthorizationError"),
        "rejected": attempt(B, BOB, "rejected", error_type="DomainError", reason="not active"),
        "system": attempt(B, OPS, "accepted", command_type="CreateTenant"),
    }
    for row in rows.values():
        assert await log.record(row)
    return rows


@pytest_asyncio.fixture
async def as_app(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A superuser connection that has become acci_app (no BYPASSRLS, owns nothing)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SET ROLE acci_app")
        yield conn


async def _tenant(conn: psycopg.AsyncConnection[Any], tenant: str | None) -> None:
    if tenant is not None:
        await conn.execute("SELECT set_config('acci.tenant_id', %s, true)", (tenant,))


async def _refused(
    conn: psycopg.AsyncConnection[Any], statement: str, tenant: str | None = A
) -> psycopg.Error:
    """Run ``statement`` in a transaction scoped to ``tenant``; the error it must raise."""
    with pytest.raises(psycopg.Error) as refused:
        async with conn.transaction():
            await _tenant(conn, tenant)
            await conn.execute(statement.encode())
    return refused.value


async def test_a_retried_outcome_is_recorded_once(pool: AsyncConnectionPool, seeded: Any) -> None:
    log = AuditLog(pool)
    again = seeded["accepted"]
    assert not await log.record(again)
    # Another outcome of the same command is a row of its own; so is another principal's denial.
    assert await log.record(attempt(A, ANN, "duplicate", command_id=again.command_id))
    assert await log.record(attempt(A, EVE, "denied", command_id=again.command_id))
    assert not await log.record(attempt(A, EVE, "denied", command_id=again.command_id))
    mine = [
        e for e in await log.entries(AuditFilter(tenant_id=A)) if e.command_id == again.command_id
    ]
    assert sorted((e.outcome, e.principal) for e in mine) == [
        ("accepted", "ann@audit-a"),
        ("denied", "eve@audit-a"),
        ("duplicate", "ann@audit-a"),
    ]


async def test_as_acci_app_the_log_cannot_be_changed_or_emptied(
    as_app: psycopg.AsyncConnection[Any], seeded: Any
) -> None:
    for statement in (
        "UPDATE audit.command_attempts SET outcome = 'accepted'",
        "DELETE FROM audit.command_attempts",
        "TRUNCATE audit.command_attempts",
    ):
        error = await _refused(as_app, statement)
        assert isinstance(error, pg_errors.InsufficientPrivilege), statement
        assert "permission denied" in str(error)


async def test_even_the_owner_cannot_update_or_delete_a_row(pool: AsyncConnectionPool) -> None:
    for statement in (
        "UPDATE audit.command_attempts SET reason = 'nothing happened'",
        "DELETE FROM audit.command_attempts WHERE outcome = 'denied'",
    ):
        with pytest.raises(psycopg.Error, match="append-only"):
            async with pool.connection() as conn:
                await conn.execute(statement.encode())


async def test_as_acci_app_a_tenant_sees_and_writes_only_its_own_rows(
    as_app: psycopg.AsyncConnection[Any], seeded: Any
) -> None:
    async with as_app.transaction():
        await _tenant(as_app, A)
        cur = await as_app.execute(
            "SELECT DISTINCT tenant_id FROM audit.command_attempts"
            " UNION ALL SELECT count(*)::text FROM audit.command_attempts WHERE tenant_id = %s",
            (B,),
        )
        assert await cur.fetchall() == [(A,), ("0",)]
    async with as_app.transaction():  # no tenant set: nothing at all
        cur = await as_app.execute("SELECT count(*) FROM audit.command_attempts")
        assert await cur.fetchone() == (0,)
    error = await _refused(
        as_app,
        "INSERT INTO audit.command_attempts (tenant_id, command_type, command_id, outcome)"
        " VALUES ('audit-b', 'RenameTenant', gen_random_uuid(), 'accepted')",
    )
    assert "row-level security" in str(error)


async def test_the_audit_log_works_as_acci_app_through_its_own_pool(
    database_url: str, seeded: Any
) -> None:
    async with create_pool(app_database_url(database_url, None), min_size=1, max_size=1) as app:
        log = AuditLog(app)
        assert await log.record(attempt(B, BOB, "accepted"))
        seen = await log.entries(AuditFilter(tenant_id=B))
        assert {e.tenant_id for e in seen} == {B} and len(seen) >= 3
        # Across tenants acci_app sees nothing: that read is the owner's.
        assert await log.entries() == []
        with pytest.raises(EventStoreError):
            await log.record(attempt("bad tenant!", BOB, "accepted"))


# --- acci audit ----------------------------------------------------------------------------------


async def acci_audit(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "ACCI_DATABASE_URL": database_url,
        "ACCI_PRINCIPAL": "cli:system_admin",
    }
    process = await asyncio.create_subprocess_exec(
        ACCI,
        "audit",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_acci_audit_filters_by_tenant_principal_time_and_outcome(
    database_url: str, seeded: Any
) -> None:
    code, out, err = await acci_audit(database_url, "--json", "--limit", "1000")
    assert code == 0, err
    every = json.loads(out)
    assert {e["tenant_id"] for e in every} == {A, B}
    assert [e["id"] for e in every] == sorted((e["id"] for e in every), reverse=True)
    denied = next(e for e in every if e["command_id"] == str(seeded["denied"].command_id))
    assert denied["principal"] == {
        "id": "eve",
        "tenant_id": A,
        "roles": ["member"],
        "kind": "user",
    }
    assert (denied["outcome"], denied["error_type"]) == ("denied", "AuthorizationError")
    assert denied["aggregate_type"] == "Tenant" and "may not send" in denied["reason"]

    code, out, err = await acci_audit(database_url, "--tenant", A, "--json", "--limit", "1000")
    assert code == 0, err
    assert {e["tenant_id"] for e in json.loads(out)} == {A}

    code, out, _ = await acci_audit(database_url, "--principal", "eve@audit-a", "--json")
    assert {(e["principal"]["id"], e["outcome"]) for e in json.loads(out)} == {("eve", "denied")}
    code, out, _ = await acci_audit(database_url, "--principal", "ops@system", "--json")
    assert [e["command_type"] for e in json.loads(out)] == ["CreateTenant"]

    code, out, _ = await acci_audit(database_url, "--outcome", "rejected", "--json")
    assert [e["reason"] for e in json.loads(out)] == ["not active"]
    code, out, _ = await acci_audit(database_url, "--since", "2999-01-01T00:00:00Z", "--json")
    assert json.loads(out) == []
    code, out, _ = await acci_audit(database_url, "--since", "1h", "--limit", "2", "--json")
    assert len(json.loads(out)) == 2


async def test_a_principal_filter_is_read_as_a_principal_is_the_tenant_after_the_last_at(
    database_url: str, pool: AsyncConnectionPool
) -> None:
    # A principal id may hold '@' (an e-mail address): "eve@audit-a" of tenant audit-z is not
    # eve of audit-a, and a filter for the one must not list the other's rows.
    c = f"audit-c-{uuid.uuid4().hex[:6]}"
    planted = Principal(id="eve@audit-a", tenant_id="audit-z", roles=frozenset({"member"}))
    log = AuditLog(pool)
    assert await log.record(attempt(c, planted, "denied", error_type="AuthorizationError"))
    assert await log.record(attempt(c, EVE, "denied", error_type="AuthorizationError"))

    async def who(principal: str) -> list[tuple[str, str | None]]:
        code, out, err = await acci_audit(
            database_url, "--tenant", c, "--principal", principal, "--json"
        )
        assert code == 0, err
        return [(e["principal"]["id"], e["principal"]["tenant_id"]) for e in json.loads(out)]

    assert await who("eve@audit-a") == [("eve", A)]
    assert await who("eve@audit-a@audit-z") == [("eve@audit-a", "audit-z")]
    assert await who("eve@audit-a@system") == []
    assert sorted(await who("eve")) == [("eve", A)]


async def test_acci_audit_prints_a_table_for_people(database_url: str, seeded: Any) -> None:
    code, out, err = await acci_audit(database_url, "--tenant", B)
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split() == ["AT", "TENANT", "PRINCIPAL", "OUTCOME", "COMMAND", "TARGET", "REASON"]
    assert any(
        "bob@audit-b" in line and "rejected" in line and "not active" in line for line in lines
    )
    assert any("ops@system" in line and "CreateTenant" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--as", "ann@audit-a:admin", "--tenant", B], "may not read tenant 'audit-b'"),
        (["--as", "ann@audit-a:admin"], "may not read every tenant's audit log"),
        (["--as", "eve@audit-a:member", "--tenant", A], "it needs one of admin, owner"),
    ],
)
async def test_acci_audit_refuses_a_reader_that_may_not_see_the_tenant(
    database_url: str, seeded: Any, args: list[str], says: str
) -> None:
    code, out, err = await acci_audit(database_url, *args)
    assert (code, out) == (2, "")
    assert err.startswith("error (authorization): ") and says in err


async def test_acci_audit_lets_a_tenant_admin_read_their_own_tenant(
    database_url: str, seeded: Any
) -> None:
    code, out, err = await acci_audit(database_url, "--as", "ann@audit-a:admin", "-t", A, "--json")
    assert code == 0, err
    assert {e["tenant_id"] for e in json.loads(out)} == {A}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--as", "ann@audit-a:boss"], "unknown role(s) 'boss'"),
        (["--since", "yesterday"], "neither a duration"),
        (["--since", "3000000d"], "before the year 1"),
        (["--since", "99999999999d"], "before the year 1"),
        (["--outcome", "exploded"], "unknown outcome(s) exploded"),
    ],
)
async def test_acci_audit_bad_options_are_usage_errors(
    database_url: str, args: list[str], says: str
) -> None:
    code, _, err = await acci_audit(database_url, *args)
    assert code == 2 and err.startswith("error (usage): ") and says in err


# --- the command activity's outcomes, run in a real activity context ---------------------------


def _activities(pool: AsyncConnectionPool, *, store_pool: AsyncConnectionPool) -> Any:
    """The command activity over ``store_pool`` (the store) and ``pool`` (the audit log)."""
    from acci.activities.command_activities import CommandActivities
    from acci.activities.command_handler import CommandHandler
    from acci.eventstore.messaging.publisher import EventPublisher
    from acci.eventstore.repository import AggregateRepository
    from acci.eventstore.snapshots import SnapshotStore
    from acci.eventstore.store import EventStore

    store = EventStore(store_pool)
    return CommandActivities(
        handler=CommandHandler(store, AggregateRepository(store, SnapshotStore(store_pool))),
        store=store,
        publisher=EventPublisher("amqp://guest:guest@127.0.0.1:5672/%2F"),
        audit=AuditLog(pool),
    )


async def test_a_retryable_failure_is_audited_once_as_failed(pool: AsyncConnectionPool) -> None:
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from acci.activities.models import CommandInput

    # A store whose pool never opened: every read fails as an outage would (retryably).
    down = create_pool("postgresql://postgres@127.0.0.1:5432/postgres")
    activities = _activities(pool, store_pool=down)
    command = CommandInput(
        command_id=uuid.uuid4(),
        tenant_id="audit-failed",
        command_type="RenameTenant",
        payload={"name": "Never"},
        principal=OPS,
    )
    for _ in range(2):  # two attempts of the same activity: one row
        with pytest.raises(ApplicationError) as failed:
            await ActivityEnvironment().run(activities.run, command)
        assert (failed.value.type, failed.value.non_retryable) == ("PersistenceError", False)
    [row] = await AuditLog(pool).entries(AuditFilter(tenant_id="audit-failed"))
    assert (row.outcome, row.error_type, row.principal) == (
        "failed",
        "PersistenceError",
        "ops@system",
    )
    assert (row.aggregate_type, row.aggregate_id) == ("Tenant", "audit-failed")
    assert row.workflow_id == "test" and row.workflow_run_id == "test-run"


async def test_a_denial_that_cannot_be_audited_is_retried_not_lost(
    pool: AsyncConnectionPool,
) -> None:
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from acci.activities.models import CommandInput

    down = create_pool("postgresql://postgres@127.0.0.1:5432/postgres")
    activities = _activities(down, store_pool=pool)
    command = CommandInput(
        command_id=uuid.uuid4(),
        tenant_id="audit-down",
        command_type="DeleteTenant",
        payload={},
        principal=EVE,
    )
    with pytest.raises(ApplicationError) as failed:
        await ActivityEnvironment().run(activities.run, command)
    # Not the denial yet: the attempt fails retryably until its denial is on record.
    assert (failed.value.type, failed.value.non_retryable) == ("PersistenceError", False)
