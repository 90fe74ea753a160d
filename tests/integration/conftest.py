"""Event-store fixtures over the test-only event registry."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.store import EventStore
from tests.integration import events


@pytest.fixture(scope="module")
def test_store(pool: AsyncConnectionPool) -> EventStore:
    """A store that knows the test event types (Noted, Counted), with a 16 KiB payload limit."""
    return EventStore(
        pool,
        registry=events.registry,
        max_payload_bytes=16 * 1024,
        max_events_per_append=100,
    )


async def count_rows(pool: AsyncConnectionPool, table: str = "event_store.events") -> int:
    """How many rows a table holds (to prove that nothing was written)."""
    from psycopg import sql

    schema, name = table.split(".")
    async with pool.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])
