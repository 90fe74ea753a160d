"""Loading a long stream: in order, from its snapshot or the start, with no sort on the server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from acci.domain import Tenant
from acci.domain.tenant_commands import CreateTenant, RenameTenant
from acci.eventstore import validation
from acci.eventstore.errors import EventStoreValidationError, UnsupportedEventTypeError
from acci.eventstore.loading import LOAD
from acci.eventstore.records import NewEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore

LONG = "t-long"
EVENTS = 3_000


def name(i: int) -> str:
    return f"Name {i:05d}"


@pytest.fixture(scope="module")
async def long_stream(store: EventStore, pool: AsyncConnectionPool) -> str:
    """A Tenant of 3,000 events (created as "Name 00001", renamed up to "Name 03000")."""
    tenant = Tenant(LONG, LONG)
    tenant.handle(CreateTenant(tenant_id=LONG, name=name(1)))
    for i in range(2, EVENTS + 1):
        tenant.handle(RenameTenant(tenant_id=LONG, name=name(i)))
    encode = store.registry.encode
    pending = [NewEvent(*encode(e)) for e in tenant.uncommitted_events]
    for start in range(0, EVENTS, 1_000):
        await store.append(
            LONG,
            LONG,
            "Tenant",
            pending[start : start + 1_000],
            command_id=uuid.uuid4(),
            expected_version=start,
        )
    async with pool.connection() as conn:
        await conn.execute("ANALYZE event_store.events")
    return LONG


async def test_a_long_stream_folds_in_stream_order_from_the_start_and_from_a_snapshot(
    long_stream: str, repository: AggregateRepository
) -> None:
    full = await repository.load(Tenant, long_stream, long_stream)
    assert (full.version, full.state.name) == (EVENTS, name(EVENTS))

    await repository.snapshot(
        await repository.load(Tenant, long_stream, long_stream, version=1_234)
    )
    from_snapshot = await repository.load(Tenant, long_stream, long_stream)
    assert (from_snapshot.version, from_snapshot.state) == (EVENTS, full.state)
    # Below the snapshot it is not used; above it, only the events in between are folded.
    assert (await repository.load(Tenant, long_stream, long_stream, version=1_000)).state.name == (
        name(1_000)
    )
    at_2000 = await repository.load(Tenant, long_stream, long_stream, version=2_000)
    assert (at_2000.version, at_2000.state.name) == (2_000, name(2_000))


async def test_the_load_reads_the_events_in_index_order_with_no_sort_of_them(
    long_stream: str, pool: AsyncConnectionPool
) -> None:
    # A sort of the whole tail (13 MB spilled to disk at 100,000 events) was most of the
    # server's share of a long load: the parts come out as their own subqueries order them.
    for schema_version in (0, Tenant.state_schema_version):
        params = {
            "tenant_id": long_stream,
            "aggregate_id": long_stream,
            "aggregate_type": "Tenant",
            "schema_version": schema_version,
            "to_version": validation.MAX_VERSION,
            "until": None,
        }
        async with pool.connection() as conn:
            cur = await conn.execute("EXPLAIN (FORMAT JSON) " + LOAD, params)
            row = await cur.fetchone()
        assert row is not None
        plan = row[0][0]["Plan"]
        sorts = [node for node in _nodes(plan) if node["Node Type"] == "Sort"]
        assert sorts == [], json.dumps(plan, indent=1)
        assert plan["Node Type"] == "Append"


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _store_raw(
    pool: AsyncConnectionPool, stream: str, sequence: int, event_type: str, data: dict[str, Any]
) -> None:
    """Write a row as some other program might have, bypassing the store's checks."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id, aggregate_type,"
            " sequence_number, event_type, event_version, data, command_id)"
            " VALUES (gen_random_uuid(), %s, %s, 'Tenant', %s, %s, 1, %s::jsonb,"
            " gen_random_uuid())",
            (stream, stream, sequence, event_type, json.dumps(data)),
        )


async def test_a_stored_event_that_cannot_be_read_is_a_typed_error_naming_it_on_load(
    store: EventStore, pool: AsyncConnectionPool, repository: AggregateRepository
) -> None:
    for stream in ("t-alien", "t-garbled"):
        await _store_raw(pool, stream, 1, "TenantCreated", {"name": "Fine", "settings": {}})
    await _store_raw(pool, "t-alien", 2, "FromTheFuture", {})
    await _store_raw(pool, "t-garbled", 2, "TenantRenamed", {"old_name": "Fine", "new_name": 7})

    with pytest.raises(UnsupportedEventTypeError, match=r"t-alien/Tenant/t-alien: stored event 2"):
        await repository.load(Tenant, "t-alien", "t-alien")
    with pytest.raises(EventStoreValidationError) as garbled:
        await repository.load(Tenant, "t-garbled", "t-garbled")
    assert not isinstance(garbled.value, UnsupportedEventTypeError)
    assert "t-garbled/Tenant/t-garbled: stored event 2 (TenantRenamed version 1)" in str(
        garbled.value
    )
    # The events before the unreadable one are still there to read up to it.
    first = await repository.load(Tenant, "t-garbled", "t-garbled", version=1)
    assert (first.version, first.state.name) == (1, "Fine")


async def test_a_stream_read_out_of_order_or_with_a_gap_fails_its_load(
    pool: AsyncConnectionPool, repository: AggregateRepository
) -> None:
    # The load takes the events in the order they come: it checks each follows the one before.
    await _store_raw(pool, "t-gap", 1, "TenantCreated", {"name": "Fine", "settings": {}})
    await _store_raw(pool, "t-gap", 3, "TenantRenamed", {"old_name": "Fine", "new_name": "Gap"})
    with pytest.raises(EventStoreValidationError, match="read stored event 3 where 2 was due"):
        await repository.load(Tenant, "t-gap", "t-gap")
    assert (await repository.load(Tenant, "t-gap", "t-gap", version=1)).version == 1
