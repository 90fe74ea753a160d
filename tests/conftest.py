"""Shared fixtures: real PostgreSQL, one database per test module (DESIGN §9)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.db import create_pool
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.readmodels.schema import prepare_database

# Tests never serve metrics on the default ports (ACCI's, the Temporal SDK's): they belong to a
# `make demo` or worker running beside them (a test run once made the demo's endpoint fail to
# start). This reaches every Settings() built in the test process and every `acci` process
# started with os.environ; a test that wants an endpoint passes a free port.
os.environ["ACCI_METRICS_PORT"] = "0"
os.environ["ACCI_TEMPORAL_METRICS_PORT"] = "0"

# The server the tests use; each module gets a database of its own on it.
SERVER_URL = os.environ.get(
    "ACCI_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(
            f"PostgreSQL is not reachable at {SERVER_URL}: {e}\n"
            "Start it (see README, 'Services') - the tests never skip a missing service.",
            pytrace=False,
        )


def database_url_for(name: str) -> str:
    """The URL of database ``name`` on the test server."""
    params = conninfo_to_dict(SERVER_URL)
    params["dbname"] = name
    return make_conninfo(**params)


def drop_database(url: str) -> None:
    """Drop the database a URL names, if it exists."""
    name = conninfo_to_dict(url)["dbname"]
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test module, dropped afterwards."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    name = re.sub(r"[^a-z0-9_]", "_", f"acci_t_{module}_{os.getpid()}".lower())[:63]
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield database_url_for(name)
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest_asyncio.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """An open pool on the module's database, migrated."""
    async with create_pool(database_url, min_size=2, max_size=20) as pool:
        await prepare_database(pool)
        yield pool


@pytest.fixture(scope="module")
def store(pool: AsyncConnectionPool) -> EventStore:
    return EventStore(pool, max_payload_bytes=16 * 1024)


@pytest.fixture(scope="module")
def snapshots(pool: AsyncConnectionPool) -> SnapshotStore:
    return SnapshotStore(pool)


@pytest.fixture(scope="module")
def repository(store: EventStore, snapshots: SnapshotStore) -> AggregateRepository:
    return AggregateRepository(store, snapshots)


# The Temporal SDK's Rust core can crash while the interpreter tears down (after every test has
# run and been reported). Leave with pytest's own status before that teardown.
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _exit_status and "temporalio.bridge" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
