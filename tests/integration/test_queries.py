"""Queries over read-model rows in real PostgreSQL: answers, paging, errors, read-your-writes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from acci.eventstore.db import create_pool
from acci.eventstore.records import Position
from acci.readmodels.bus import QueryBus, build_query_bus
from acci.readmodels.consistency import wait_until_projected
from acci.readmodels.errors import (
    NotFoundError,
    ProjectionError,
    QueryValidationError,
    ReadModelError,
)
from acci.readmodels.queries import MAX_LIMIT, Query, encode_cursor
from acci.readmodels.tenancy.tenant_activity import GetTenantActivity
from acci.readmodels.tenancy.tenants import GetTenantDetails, ListTenants, TenantView
from acci.readmodels.tenancy.users import GetUser, ListTenantUsers
from tests.conftest import _admin, database_url_for
from tests.integration.query_rows import (
    REDIS_URL,
    at,
    delete_checkpoint,
    delete_keys,
    put_activity,
    put_tenant,
    put_user,
    require_redis,
    set_checkpoint,
)
from tests.workflows.conftest import eventually


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture(scope="module")
async def read_models(pool: AsyncConnectionPool) -> AsyncConnectionPool:
    """The module's database, migrated, with every read model's live tables."""
    return pool


@pytest.fixture(scope="module")
def bus(read_models: AsyncConnectionPool) -> QueryBus:
    """A bus without a cache (the cache has tests of its own), waiting at most 2 s."""
    return build_query_bus(read_models, consistency_timeout=2.0)


@pytest_asyncio.fixture
async def only_these_tenants(read_models: AsyncConnectionPool) -> AsyncConnectionPool:
    """An empty tenants table, for tests that list every tenant."""
    async with read_models.connection() as conn:
        await conn.execute("DELETE FROM read_models.tenants")
    return read_models


# --- tenants -------------------------------------------------------------------------------------


async def test_tenant_details_are_the_read_model_row(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_tenant(
        read_models,
        tenant,
        name="Acme Corp",
        status="suspended",
        user_count=3,
        settings={"max_users": 10},
        created_at=at(1),
        last_updated=at(5),
        version=4,
    )
    view = await bus.ask(GetTenantDetails(tenant_id=tenant))
    assert view == TenantView(
        tenant_id=tenant,
        name="Acme Corp",
        status="suspended",
        user_count=3,
        settings={"max_users": 10},
        created_at=at(1),
        last_updated=at(5),
        version=4,
    )


async def test_an_unknown_tenant_is_not_found_by_name(bus: QueryBus) -> None:
    with pytest.raises(NotFoundError, match=r"tenant 'nobody-here' not found"):
        await bus.ask(GetTenantDetails(tenant_id="nobody-here"))


# (name, created minute, updated minute): three different orders. Names sort by the database's
# collation; these sort alike in every collation.
ROWS = {
    "t-a": ("Delta", 3, 10),
    "t-b": ("Alpha", 1, 30),
    "t-c": ("Charlie", 5, 20),
    "t-d": ("Bravo", 2, 50),
    "t-e": ("Echo", 4, 40),
}


@pytest.mark.parametrize("sort", ["name", "created_at", "last_updated"])
@pytest.mark.parametrize("descending", [False, True])
async def test_tenants_are_listed_in_the_asked_order(
    bus: QueryBus, only_these_tenants: AsyncConnectionPool, sort: str, descending: bool
) -> None:
    for tenant, (name, created, updated) in ROWS.items():
        await put_tenant(
            only_these_tenants, tenant, name=name, created_at=at(created), last_updated=at(updated)
        )
    page = await bus.ask(ListTenants(sort=sort, descending=descending))  # type: ignore[arg-type]
    listed = [getattr(t, sort) for t in page.items]
    assert len(listed) == len(ROWS)
    assert listed == sorted(listed, reverse=descending)
    assert page.next_cursor is None


async def test_tenants_are_filtered_by_status(
    bus: QueryBus, only_these_tenants: AsyncConnectionPool
) -> None:
    for tenant, status in [("t-1", "active"), ("t-2", "suspended"), ("t-3", "active")]:
        await put_tenant(only_these_tenants, tenant, status=status)
    await put_tenant(only_these_tenants, "t-4", status="deleted")
    active = await bus.ask(ListTenants(status="active"))
    assert [t.tenant_id for t in active.items] == ["t-1", "t-3"]
    suspended = await bus.ask(ListTenants(status="suspended"))
    assert [t.tenant_id for t in suspended.items] == ["t-2"]


async def test_paging_by_offset_and_by_cursor_visits_every_tenant_once(
    bus: QueryBus, only_these_tenants: AsyncConnectionPool
) -> None:
    # Equal names: the tenant id breaks the tie, so no page repeats or skips one.
    for i in range(8):
        await put_tenant(only_these_tenants, f"t-{i}", name=f"Name {i // 3}", created_at=at(i))
    everything = [t.tenant_id for t in (await bus.ask(ListTenants(limit=MAX_LIMIT))).items]
    assert everything == [f"t-{i}" for i in range(8)]

    by_offset = []
    for offset in range(0, 8, 3):
        page = await bus.ask(ListTenants(limit=3, offset=offset))
        by_offset += [t.tenant_id for t in page.items]
    assert by_offset == everything

    by_cursor: list[str] = []
    cursor = None
    for _ in range(4):
        page = await bus.ask(ListTenants(limit=3, cursor=cursor))
        by_cursor += [t.tenant_id for t in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert by_cursor == everything
    assert cursor is None

    newest_first = []
    cursor = None
    while True:
        page = await bus.ask(
            ListTenants(sort="created_at", descending=True, limit=5, cursor=cursor)
        )
        newest_first += [t.tenant_id for t in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert newest_first == everything[::-1]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"limit": 0}, "limit: Input should be greater than or equal to 1 (got 0)"),
        ({"limit": 501}, "limit: Input should be less than or equal to 500 (got 501)"),
        ({"offset": -1}, "offset: Input should be greater than or equal to 0 (got -1)"),
        ({"offset": 2**63}, "offset: Input should be less than or equal to 9223372036854775807"),
        ({"sort": "email"}, "sort: Input should be 'name', 'created_at' or 'last_updated'"),
        ({"status": "gone"}, "status: Input should be 'active', 'suspended' or 'deleted'"),
        ({"cursor": "not-a-cursor"}, "cursor 'not-a-cursor' is not a cursor this query returned"),
        (
            {"cursor": encode_cursor("name", False, "x", "t-1"), "offset": 2},
            "give an offset (2) or a cursor, not both",
        ),
        (
            {"cursor": encode_cursor("name", False, "x", "t-1"), "sort": "created_at"},
            "pages by name asc; ask with that sort order",
        ),
        ({"consistent_with": "12"}, "not a position: '12'"),
        ({"page": 2}, "page: Extra inputs are not permitted"),
    ],
)
def test_bad_paging_and_filters_are_validation_errors(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(QueryValidationError) as caught:
        ListTenants(**fields)
    assert str(caught.value).startswith("invalid ListTenants: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("query_type", "fields", "problem"),
    [
        (GetTenantDetails, {"tenant_id": "a b"}, "tenant id 'a b' must be"),
        (GetUser, {"tenant_id": "t-1"}, "user_id: Field required"),
        (ListTenantUsers, {"tenant_id": "t-1", "role": "Admin!"}, "role name 'Admin!' must be"),
        (ListTenantUsers, {"tenant_id": "t-1", "status": "gone"}, "'active' or 'deactivated'"),
        (ListTenantUsers, {"tenant_id": "t-1", "limit": 1000}, "limit: Input should be less"),
        (GetTenantActivity, {"tenant_id": "t-1", "consistent_with": (1, -1)}, "is negative"),
    ],
)
def test_every_query_reports_bad_fields_as_validation_errors(
    query_type: type[Query[Any]], fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(QueryValidationError, match=f"invalid {query_type.__name__}: ") as caught:
        query_type(**fields)
    assert problem in str(caught.value)


# --- users ---------------------------------------------------------------------------------------


async def test_a_user_is_found_in_its_own_tenant_only(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant, other = new_id(), new_id()
    await put_user(
        read_models, tenant, "u-1", email="ann@example.com", roles=["member", "admin"], version=3
    )
    user = await bus.ask(GetUser(tenant_id=tenant, user_id="u-1"))
    assert (user.tenant_id, user.email, user.roles, user.status, user.version) == (
        tenant,
        "ann@example.com",
        ("admin", "member"),
        "active",
        3,
    )
    with pytest.raises(NotFoundError) as caught:
        await bus.ask(GetUser(tenant_id=other, user_id="u-1"))
    assert str(caught.value) == f"user 'u-1' not found in tenant {other!r}"


async def test_tenant_users_are_sorted_by_email_and_filtered_by_status_and_role(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_user(read_models, tenant, "u-c", email="carol@x.io", roles=["admin", "member"])
    await put_user(read_models, tenant, "u-a", email="alice@x.io", roles=["owner"])
    await put_user(read_models, tenant, "u-b", email="bob@x.io", status="deactivated")
    await put_user(read_models, tenant, "u-d", email="dave@x.io", roles=["admin"])
    await put_user(read_models, new_id(), "u-z", email="aaron@elsewhere.io", roles=["admin"])

    everyone = await bus.ask(ListTenantUsers(tenant_id=tenant))
    assert [u.user_id for u in everyone.items] == ["u-a", "u-b", "u-c", "u-d"]
    active = await bus.ask(ListTenantUsers(tenant_id=tenant, status="active"))
    assert [u.user_id for u in active.items] == ["u-a", "u-c", "u-d"]
    admins = await bus.ask(ListTenantUsers(tenant_id=tenant, role="admin"))
    assert [u.user_id for u in admins.items] == ["u-c", "u-d"]
    deactivated_admins = await bus.ask(
        ListTenantUsers(tenant_id=tenant, role="admin", status="deactivated")
    )
    assert deactivated_admins.items == ()

    first = await bus.ask(ListTenantUsers(tenant_id=tenant, limit=3))
    assert [u.user_id for u in first.items] == ["u-a", "u-b", "u-c"]
    rest = await bus.ask(ListTenantUsers(tenant_id=tenant, limit=3, cursor=first.next_cursor))
    assert ([u.user_id for u in rest.items], rest.next_cursor) == (["u-d"], None)
    by_offset = await bus.ask(ListTenantUsers(tenant_id=tenant, limit=3, offset=3))
    assert [u.user_id for u in by_offset.items] == ["u-d"]


# --- activity ------------------------------------------------------------------------------------


async def test_tenant_activity_counts_events_by_type(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_activity(read_models, tenant, "UserRegistered", 7, at(30))
    await put_activity(read_models, tenant, "TenantCreated", 1, at(0))
    await put_activity(read_models, tenant, "RoleAssigned", 4, at(45))
    await put_activity(read_models, new_id(), "TenantCreated", 1, at(99))

    activity = await bus.ask(GetTenantActivity(tenant_id=tenant))
    assert [(a.event_type, a.event_count) for a in activity.event_types] == [
        ("RoleAssigned", 4),
        ("TenantCreated", 1),
        ("UserRegistered", 7),
    ]
    assert (activity.total_events, activity.last_event_at) == (12, at(45))


async def test_a_tenant_without_activity_is_not_found(bus: QueryBus) -> None:
    with pytest.raises(NotFoundError, match="no activity recorded for tenant 'quiet-one'"):
        await bus.ask(GetTenantActivity(tenant_id="quiet-one"))


# --- the bus -------------------------------------------------------------------------------------


class CountTenants(Query[TenantView]):
    """A query type no handler is registered for."""

    result_type: ClassVar[type[BaseModel]] = TenantView


async def test_a_query_type_without_handler_is_a_validation_error(bus: QueryBus) -> None:
    with pytest.raises(QueryValidationError, match="no handler for query type 'CountTenants'"):
        await bus.ask(CountTenants())


async def test_query_time_is_measured_per_query_type(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_tenant(read_models, tenant)

    def count() -> float:
        value = REGISTRY.get_sample_value("acci_query_seconds_count", {"query": "GetTenantDetails"})
        return value or 0.0

    before = count()
    await bus.ask(GetTenantDetails(tenant_id=tenant))
    with pytest.raises(NotFoundError):
        await bus.ask(GetTenantDetails(tenant_id=new_id()))
    assert count() == before + 2


@pytest_asyncio.fixture(scope="module")
async def database_without_read_models(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A database that was never migrated."""
    name = f"{conninfo_to_dict(database_url)['dbname']}_bare"[:63]
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        async with create_pool(database_url_for(name), min_size=1, max_size=2) as pool:
            yield pool
    finally:
        with _admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def test_database_errors_are_read_model_errors(
    database_without_read_models: AsyncConnectionPool,
) -> None:
    bare = build_query_bus(database_without_read_models)
    with pytest.raises(ReadModelError, match=r"not set up in this database .*acci db migrate"):
        await bare.ask(GetTenantDetails(tenant_id="t-1"))
    with pytest.raises(ReadModelError, match="not set up"):
        await bare.ask(ListTenants(consistent_with=Position(1, 1)))


# --- read-your-writes ----------------------------------------------------------------------------


async def test_a_consistent_query_waits_until_the_projection_has_passed_the_position(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_tenant(read_models, tenant, name="Before", version=1)
    await set_checkpoint(read_models, "tenants", Position(500, 40))

    asked = asyncio.create_task(
        bus.ask(GetTenantDetails(tenant_id=tenant, consistent_with=Position(501, 7)))
    )
    await eventually(
        lambda: REGISTRY.get_sample_value("acci_query_consistency_waiting") == 1,
        what="the query to wait for the projection",
    )
    assert not asked.done()

    async def project() -> None:
        # What the projection does: the row and the checkpoint in one transaction.
        async with read_models.connection() as conn, conn.transaction():
            await put_tenant(read_models, tenant, name="After", version=2, conn=conn)
            await set_checkpoint(read_models, "tenants", Position(501, 7), conn=conn)

    await asyncio.create_task(project())
    view = await asyncio.wait_for(asked, timeout=5)
    assert (view.name, view.version) == ("After", 2)


@pytest.mark.parametrize(
    ("checkpoint", "reached"),
    [
        (Position(700, 5), True),  # the position itself
        (Position(700, 6), True),
        (Position(701, 1), True),  # a later transaction, smaller global position
        (Position(700, 4), False),
        (Position(699, 999), False),  # larger global position, earlier transaction: not passed
    ],
)
async def test_the_checkpoint_is_compared_as_a_transaction_position_pair(
    read_models: AsyncConnectionPool, checkpoint: Position, reached: bool
) -> None:
    await set_checkpoint(read_models, "tenant_activity", checkpoint)
    waited = wait_until_projected(read_models, ["tenant_activity"], Position(700, 5), timeout=0.05)
    if reached:
        await waited
    else:
        with pytest.raises(ProjectionError, match="has not reached position 700:5"):
            await waited


async def test_the_bounded_wait_ends_with_a_projection_error_naming_the_read_model(
    read_models: AsyncConnectionPool,
) -> None:
    impatient = build_query_bus(read_models, consistency_timeout=0.2)
    await set_checkpoint(read_models, "tenants", Position(1230, 50))
    await set_checkpoint(read_models, "users", Position(9000, 1))
    with pytest.raises(ProjectionError) as caught:
        await impatient.ask(ListTenants(consistent_with=Position(1234, 56)))
    assert str(caught.value) == (
        "read model 'tenants' has not reached position 1234:56 after 0.2 s (at 1230:50)"
    )

    # Each query waits for the read model it reads, and only for that one.
    await set_checkpoint(read_models, "users", Position(1000, 1), last_error="bad email")
    await set_checkpoint(read_models, "tenants", Position(9000, 1))
    with pytest.raises(ProjectionError) as caught:
        await impatient.ask(GetUser(tenant_id="t-1", user_id="u-1", consistent_with="1234:56"))
    assert str(caught.value) == (
        "read model 'users' has not reached position 1234:56 after 0.2 s"
        " (at 1000:1; last error: bad email)"
    )

    await set_checkpoint(read_models, "tenant_activity", Position(3, 3), status="paused")
    with pytest.raises(ProjectionError, match=r"'tenant_activity' .* \(at 3:3, paused\)"):
        await impatient.ask(GetTenantActivity(tenant_id="t-1", consistent_with="1234:56"))

    await delete_checkpoint(read_models, "tenant_activity")
    with pytest.raises(ProjectionError, match=r"\(no checkpoint yet\)"):
        await impatient.ask(GetTenantActivity(tenant_id="t-1", consistent_with="1:1"))


# --- the CLI -------------------------------------------------------------------------------------

# The query commands mounted the way workers/cli.py mounts them into `acci tenant` / `acci user`.
MOUNTED = """
import typer
from acci.workers.cli_commands import tenant_app, user_app
from acci.workers.cli_queries import tenant_queries, user_queries
tenant_app.add_typer(tenant_queries)
user_app.add_typer(user_queries)
app = typer.Typer()
app.add_typer(tenant_app, name="tenant")
app.add_typer(user_app, name="user")
app()
"""

# The CLI caches in a Redis database of its own, emptied around these tests: cached answers from
# another test database must not leak into them.
CLI_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/14"


@pytest.fixture(scope="module")
def cli_database(database_url: str) -> Iterator[str]:
    require_redis(CLI_REDIS_URL)
    delete_keys("acci", CLI_REDIS_URL)
    yield database_url
    delete_keys("acci", CLI_REDIS_URL)


def acci(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACCI_DATABASE_URL": database_url, "ACCI_REDIS_URL": CLI_REDIS_URL}
    return subprocess.run(
        [sys.executable, "-c", MOUNTED, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_prints_tenants_users_and_activity(
    cli_database: str, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id("cli")
    await put_tenant(read_models, tenant, name="Cli Corp", user_count=2, version=3)
    await put_user(read_models, tenant, "u-1", email="ann@cli.io", roles=["admin"])
    await put_user(read_models, tenant, "u-2", email="bob@cli.io", status="deactivated")
    await put_activity(read_models, tenant, "TenantCreated", 1, at(0))
    await set_checkpoint(read_models, "tenants", Position(10_000, 1))

    got = await asyncio.to_thread(
        acci,
        cli_database,
        "tenant",
        "get",
        "--tenant",
        tenant,
        "--json",
        "--consistent-with",
        "10000:1",
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["name"] == "Cli Corp"

    shown = await asyncio.to_thread(acci, cli_database, "tenant", "get", "--tenant", tenant)
    assert shown.returncode == 0, shown.stderr
    assert "Cli Corp" in shown.stdout and "active" in shown.stdout

    listed = await asyncio.to_thread(
        acci,
        cli_database,
        "tenant",
        "list",
        "--status",
        "active",
        "--sort",
        "created_at",
        "--desc",
        "--limit",
        "500",
    )
    assert listed.returncode == 0, listed.stderr
    assert tenant in listed.stdout

    users = await asyncio.to_thread(
        acci, cli_database, "user", "list", "--tenant", tenant, "--status", "active", "--json"
    )
    assert users.returncode == 0, users.stderr
    assert [u["user_id"] for u in json.loads(users.stdout)["items"]] == ["u-1"]

    user = await asyncio.to_thread(acci, cli_database, "user", "get", "u-2", "--tenant", tenant)
    assert user.returncode == 0, user.stderr
    assert "bob@cli.io" in user.stdout and "deactivated" in user.stdout

    activity = await asyncio.to_thread(acci, cli_database, "tenant", "activity", "--tenant", tenant)
    assert activity.returncode == 0, activity.stderr
    assert "TenantCreated" in activity.stdout


async def test_cli_reports_query_errors_in_one_line(
    cli_database: str, read_models: AsyncConnectionPool
) -> None:
    missing = await asyncio.to_thread(acci, cli_database, "user", "get", "u-9", "--tenant", "t-9")
    assert missing.returncode == 1
    assert "error (not_found): user 'u-9' not found in tenant 't-9'" in missing.stderr

    bad = await asyncio.to_thread(acci, cli_database, "tenant", "list", "--limit", "0")
    assert bad.returncode == 1
    assert "error (validation): invalid ListTenants: limit:" in bad.stderr

    not_a_position = await asyncio.to_thread(
        acci, cli_database, "tenant", "get", "--tenant", "t-1", "--consistent-with", "soon"
    )
    assert not_a_position.returncode == 2
    assert "not a position: 'soon'" in not_a_position.stderr
