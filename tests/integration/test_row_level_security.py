"""Tenant isolation in the database: as acci_app, hand-written SQL sees and touches one tenant.

The rows are written as the tables' owner (the cross-tenant role); every statement under test
runs on a connection that logged in as ``acci_app`` (migration 012), as the worker's command
path and the query bus do, with the tenant set the way ``eventstore/tenant_scope.py`` sets it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, LiteralString

import psycopg
import pytest
import pytest_asyncio
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from acci.domain.principals import SYSTEM_ADMIN, Principal
from acci.eventstore.db import create_pool
from acci.eventstore.encryption import PayloadEncryption
from acci.eventstore.errors import CommandIdReusedError
from acci.eventstore.keyring import KeyRing
from acci.eventstore.keys import LocalKeyWrapper
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.readmodels.bus import pooled_query_bus
from acci.readmodels.errors import QueryAuthorizationError
from acci.readmodels.query_scope import TenantScopedPool, answering_for
from acci.readmodels.tenancy.tenants import GetTenantDetails, ListTenants
from tests.integration.events import noted, registry

A, B, C = "rls-a", "rls-b", "rls-c"

# Every table of tenant rows an app connection might reach, by the name statements use.
TENANT_TABLES = (
    "event_store.events",
    "event_store.commands",
    "snapshots.aggregate_snapshots",
    "read_models.tenants",
    "read_models.tenants_v1",
)


def as_app(database_url: str) -> str:
    params = conninfo_to_dict(database_url)
    params.pop("password", None)
    return make_conninfo("", **{**params, "user": "acci_app"})


@pytest_asyncio.fixture(scope="module")
async def written(pool: AsyncConnectionPool) -> dict[str, Any]:
    """Two tenants' events, commands, snapshots and tenant rows, written as the owner."""
    store = EventStore(pool, registry=registry)
    commands = {}
    for tenant in (A, B):
        commands[tenant] = uuid.uuid4()
        await store.append(tenant, "stream-1", "Note", [noted(tenant)], command_id=commands[tenant])
        await SnapshotStore(pool).save(
            tenant, "stream-1", "Note", version=1, schema_version=1, state={"text": tenant}
        )
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO read_models.tenants (tenant_id, name, status, settings, created_at,"
                " last_updated, version) VALUES (%s, %s, 'active', '{}', %s, %s, 1)",
                (tenant, f"Tenant {tenant}", datetime.now(UTC), datetime.now(UTC)),
            )
    return commands


@pytest.fixture
def app(database_url: str, written: dict[str, Any]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(as_app(database_url)) as conn:
        yield conn


def set_tenant(conn: psycopg.Connection[Any], tenant: str) -> None:
    conn.execute("SELECT set_config('acci.tenant_id', %s, true)", (tenant,))


def count(
    conn: psycopg.Connection[Any], table: str, where: LiteralString = "TRUE", *values: object
) -> int:
    """Rows of ``table`` (schema.name) that match ``where``, its values given as parameters."""
    name = sql.Identifier(*table.split("."))
    statement = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(name, sql.SQL(where))
    row = conn.execute(statement, values).fetchone()
    assert row is not None
    return int(row[0])


def test_the_app_role_owns_nothing_and_cannot_bypass_row_security(
    app: psycopg.Connection[Any],
) -> None:
    row = app.execute(
        "SELECT current_user, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row == ("acci_app", False, False)
    owned = app.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
        " WHERE r.rolname = 'acci_app'"
    ).fetchone()
    assert owned == (0,)


def test_a_session_of_the_app_role_opened_by_hand_ends_an_idle_transaction_itself(
    database_url: str, written: dict[str, Any]
) -> None:
    # A transaction held open holds back every gap-free reader of every tenant: a session that
    # did not come from ACCI's pools (psql, a script) gets the timeouts from the role
    # (migration 016), so leaving it idle in a transaction does not stall the read side.
    with psycopg.connect(as_app(database_url)) as conn:
        shown = conn.execute(
            "SELECT current_setting('idle_in_transaction_session_timeout'),"
            " current_setting('statement_timeout')"
        ).fetchone()
        assert shown == ("30s", "1min")
        conn.rollback()
        conn.execute("SET idle_in_transaction_session_timeout = '200ms'")  # as a test may
        conn.commit()
        conn.execute("SELECT 1")  # a transaction begins, and is left idle
        time.sleep(1.0)
        with pytest.raises(pg_errors.IdleInTransactionSessionTimeout):
            conn.execute("SELECT 1")


def test_with_no_tenant_set_nothing_is_visible(app: psycopg.Connection[Any]) -> None:
    for table in TENANT_TABLES:
        assert count(app, table) == 0, table


def test_with_tenant_a_set_only_a_is_read_or_counted(app: psycopg.Connection[Any]) -> None:
    with app.transaction():
        set_tenant(app, A)
        for table in TENANT_TABLES:
            assert count(app, table) == 1, table
            assert count(app, table, "tenant_id = %s", B) == 0, table
            assert count(app, table, "tenant_id <> current_setting('acci.tenant_id')") == 0
        # Not even by what B's rows hold.
        assert count(app, "event_store.events", "data->>'text' = %s", B) == 0


def test_the_setting_ends_with_its_transaction(app: psycopg.Connection[Any]) -> None:
    with app.transaction():
        set_tenant(app, A)
        assert count(app, "event_store.events") == 1
    assert count(app, "event_store.events") == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE event_store.events SET data = '{}' WHERE tenant_id = 'rls-b'",
        "DELETE FROM event_store.events WHERE tenant_id = 'rls-b'",
        "UPDATE snapshots.aggregate_snapshots SET state = '{}'",
        "DELETE FROM snapshots.aggregate_snapshots",
        "UPDATE read_models.tenants_v1 SET name = 'x'",
        "DELETE FROM read_models.tenants",
        "TRUNCATE event_store.events",
    ],
)
def test_the_log_and_the_read_models_cannot_be_changed(
    app: psycopg.Connection[Any], statement: str
) -> None:
    with pytest.raises(pg_errors.InsufficientPrivilege), app.transaction():
        set_tenant(app, A)
        app.execute(statement)


def test_a_tenant_cannot_insert_rows_of_another(app: psycopg.Connection[Any]) -> None:
    inserts = [
        (
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, metadata, command_id) VALUES"
            " (gen_random_uuid(), %s, 'x', 'Note', 1, 'Noted', 1, '{}', '{}', gen_random_uuid())"
        ),
        (
            "INSERT INTO snapshots.aggregate_snapshots (snapshot_id, aggregate_id,"
            " aggregate_type, sequence_number, schema_version, state, metadata, tenant_id)"
            " VALUES (gen_random_uuid(), 'x', 'Note', 9, 1, '{}', '{}', %s)"
        ),
    ]
    for insert in inserts:
        with pytest.raises(pg_errors.InsufficientPrivilege, match="row-level security"):
            with app.transaction():
                set_tenant(app, A)
                app.execute(insert, (B,))
    with app.transaction():
        set_tenant(app, B)
        assert count(app, "event_store.events") == 1
        assert count(app, "snapshots.aggregate_snapshots") == 1


def test_rows_a_tenant_may_update_are_still_only_its_own(app: psycopg.Connection[Any]) -> None:
    # The inbox is written by the app role (UPDATE and DELETE granted): the policy still holds.
    with app.transaction():
        set_tenant(app, B)
        app.execute(
            "INSERT INTO subscriptions.inbox (subscriber, message_id, event_type, tenant_id)"
            " VALUES ('s', gen_random_uuid(), 'Noted', %s)",
            (B,),
        )
    with app.transaction():
        set_tenant(app, A)
        assert app.execute("UPDATE subscriptions.inbox SET event_type = 'x'").rowcount == 0
        assert app.execute("DELETE FROM subscriptions.inbox").rowcount == 0
    with app.transaction():
        set_tenant(app, B)
        assert count(app, "subscriptions.inbox", "event_type = %s", "Noted") == 1


async def test_the_stores_as_the_app_role_work_within_their_tenant_only(
    database_url: str, written: dict[str, Any]
) -> None:
    async with create_pool(as_app(database_url), min_size=1, max_size=2) as app_pool:
        store = EventStore(app_pool, registry=registry)
        assert [e.data for e in await store.read_stream(A, "stream-1")] == [{"text": A}]
        assert [e.data for e in await store.read_stream(B, "stream-1")] == [{"text": B}]
        # A tenant of its own: the other tests count A's and B's rows.
        stored = await store.append(C, "stream-2", "Note", [noted("new")], command_id=uuid.uuid4())
        assert stored.events[0].tenant_id == C
        # Cross-tenant reads see nothing as this role: they are the owner's work.
        assert await store.read_all() == []
        # B's command id reused by A: refused, though A's role cannot see B's command.
        with pytest.raises(CommandIdReusedError):
            await store.append(C, "stream-3", "Note", [noted("x")], command_id=written[B])
        assert await store.read_stream(C, "stream-3") == []


async def test_sealed_payloads_as_the_app_role(database_url: str, written: dict[str, Any]) -> None:
    # With encryption on, the command path's first append of a tenant creates its data key as
    # acci_app (the key table is under the same policy) and reads it back, in its tenant only.
    async with create_pool(as_app(database_url), min_size=1, max_size=2) as app_pool:
        wrapper = LocalKeyWrapper("test-1", secrets.token_bytes(32))
        encryption = PayloadEncryption(KeyRing(app_pool, wrapper), encrypt=True)
        store = EventStore(app_pool, registry=registry, encryption=encryption)
        await store.append("rls-sealed", "s", "Note", [noted("secret")], command_id=uuid.uuid4())
        assert [e.data for e in await store.read_stream("rls-sealed", "s")] == [{"text": "secret"}]
    with psycopg.connect(database_url) as owner:
        stored = owner.execute(
            "SELECT data::text FROM event_store.events WHERE tenant_id = 'rls-sealed'"
        ).fetchone()
        assert stored is not None and "secret" not in stored[0]
        keys = owner.execute(
            "SELECT count(*) FROM event_store.tenant_keys WHERE tenant_id = 'rls-sealed'"
        ).fetchone()
        assert keys == (1,)


async def test_a_query_handler_s_own_transaction_stays_in_the_tenant(
    database_url: str, written: dict[str, Any]
) -> None:
    async with create_pool(
        as_app(database_url), min_size=1, max_size=1, pool_class=TenantScopedPool
    ) as pool:
        with answering_for(A):
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute("SELECT tenant_id FROM event_store.events")
                assert {row[0] for row in await cur.fetchall()} == {A}
        async with pool.connection() as conn:  # outside any query: no tenant, nothing seen
            cur = await conn.execute("SELECT count(*) FROM event_store.events")
            assert await cur.fetchone() == (0,)


async def test_queries_carry_the_principal(database_url: str, written: dict[str, Any]) -> None:
    admin_of_a = Principal(id="ann", tenant_id=A, roles=frozenset({"admin"}))
    system = Principal(id="ops", roles=frozenset({SYSTEM_ADMIN}))
    async with pooled_query_bus(
        database_url, app_database_url=as_app(database_url), principal=admin_of_a
    ) as bus:
        assert (await bus.ask(GetTenantDetails(tenant_id=A))).tenant_id == A
        with pytest.raises(
            QueryAuthorizationError, match="may not read the data of tenant 'rls-b'"
        ):
            await bus.ask(GetTenantDetails(tenant_id=B))
        mine = await bus.ask(ListTenants())
        assert [t.tenant_id for t in mine.items] == [A]
        everyone = await bus.ask(ListTenants(), principal=system)
        assert sorted(t.tenant_id for t in everyone.items) == [A, B]
        assert (await bus.ask(GetTenantDetails(tenant_id=B), principal=system)).tenant_id == B


def test_a_tenant_restore_s_role_rewrites_its_tenant_only(
    database_url: str, written: dict[str, Any]
) -> None:
    # The role a tenant's restore switches to (migration 015): it may delete and insert
    # history, but only inside the tenant its transaction is scoped to.
    with psycopg.connect(database_url) as owner:
        role = owner.execute(
            "SELECT rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'acci_restore'"
        ).fetchone()
        assert role == (False, False)
        with owner.transaction(force_rollback=True):
            theirs = count(owner, "event_store.events", "tenant_id = %s", B)
            mine = count(owner, "event_store.events", "tenant_id = %s", A)
            assert mine == 1
            owner.execute("SET LOCAL ROLE acci_restore")
            set_tenant(owner, A)
            assert owner.execute("DELETE FROM event_store.events").rowcount == mine
            assert owner.execute("DELETE FROM snapshots.aggregate_snapshots").rowcount == 1
            with pytest.raises(pg_errors.InsufficientPrivilege):
                with owner.transaction():
                    owner.execute("DELETE FROM read_models.tenants_v1")
            owner.execute("RESET ROLE")
            assert count(owner, "event_store.events", "tenant_id = %s", B) == theirs > 0
            assert count(owner, "event_store.events", "tenant_id = %s", A) == 0
