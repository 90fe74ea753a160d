"""Crypto-shredding end to end, with the domain's own commands and read models (issue 14, §4):
`acci tenant shred` leaves the other tenants' read models and commands as they were, removes the
shredded tenant's read-model rows, and the projections go on past its events."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import pika
import pytest
from psycopg_pool import AsyncConnectionPool

from acci.activities.command_activities import parse
from acci.activities.command_handler import CommandHandler
from acci.activities.models import CommandInput
from acci.eventstore.encryption import PayloadEncryption
from acci.eventstore.errors import TenantKeyShreddedError
from acci.eventstore.keyring import KeyRing
from acci.eventstore.keys import LocalKeyWrapper, master_key_bytes, new_master_key
from acci.eventstore.messaging.publisher import EventPublisher
from acci.eventstore.records import START
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.readmodels.installed import read_models
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.verification import verify_read_model
from acci.workers.cli_events_publish import publish_range
from tests.integration.cli_process import acci
from tests.integration.projection_support import read_model_rows, tenancy_projections
from tests.workflows.conftest import RABBITMQ_URL

KEY = new_master_key()


async def test_shredding_a_tenant_forgets_its_read_models_and_leaves_the_others(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    ring = KeyRing(pool, LocalKeyWrapper("k1", master_key_bytes(KEY)), cache_ttl=0)
    encryption = PayloadEncryption(ring, encrypt=True, shredded_events="skip")
    store = EventStore(pool, encryption=encryption)
    handler = CommandHandler(
        store, AggregateRepository(store, SnapshotStore(pool, encryption=encryption))
    )
    runners = [ProjectionRunner(p, store) for p in tenancy_projections()]

    async def send(tenant: str, command_type: str, **payload: Any) -> None:
        command = CommandInput(
            command_id=uuid.uuid4(), tenant_id=tenant, command_type=command_type, payload=payload
        )
        await handler.handle(tenant, parse(command), command_id=command.command_id)

    async def project() -> None:
        for runner in runners:
            report = await runner.catch_up()
            assert report.failure is None and not report.paused, report

    gone, kept = f"gone-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    for t in (gone, kept):
        await send(t, "CreateTenant", name=f"{t} Ltd")
        await send(
            t,
            "RegisterUser",
            user_id="u1",
            email=f"ada@{t}.io",
            display_name="Ada",
            roles=["member"],
        )
    await project()
    before = await read_model_rows(pool, [kept])
    assert (await read_model_rows(pool, [gone]))["users"]

    env = {
        **os.environ,
        "ACCI_DATABASE_URL": database_url,
        "ACCI_MASTER_KEY": KEY,
        "ACCI_MASTER_KEY_ID": "k1",
    }
    assert (await asyncio.to_thread(acci, env, "db", "migrate")).returncode == 0
    done = await asyncio.to_thread(acci, env, "tenant", "shred", "--tenant", gone, "--yes")
    assert done.returncode == 0, done.stderr

    assert await read_model_rows(pool, [gone]) == {
        "tenants": [],
        "users": [],
        "tenant_activity": [],
    }
    assert await read_model_rows(pool, [kept]) == before
    with pytest.raises(TenantKeyShreddedError):
        await send(gone, "RenameTenant", name="Back")
    # The other tenant goes on, and the projections with it, past the shredded events.
    await send(kept, "RenameTenant", name="Still Here")
    await project()
    assert (await read_model_rows(pool, [kept]))["tenants"][0]["name"] == "Still Here"
    assert await read_model_rows(pool, [gone]) == {
        "tenants": [],
        "users": [],
        "tenant_activity": [],
    }
    # A rebuild from the start (the projections reset) makes nothing for it either.
    for runner in runners:
        await runner.reset()
    await project()
    assert await read_model_rows(pool, [gone]) == {
        "tenants": [],
        "users": [],
        "tenant_activity": [],
    }
    assert (await read_model_rows(pool, [kept]))["users"] == before["users"]
    # Republishing passes over the shredded tenant's events: no consumer is handed ciphertext.
    assert await republished(store, gone) == []
    assert {e["tenant_id"] for e in await republished(store, kept)} == {kept}
    # `acci verify` and a rebuild's check fold the store as the projections do: past the
    # shredded tenant's events, so every read model still equals its fold.
    for model in (m for m in read_models() if m.name in {p.name for p in tenancy_projections()}):
        for tenant in (gone, kept, None):
            comparisons = await verify_read_model(store, model, tenant=tenant)
            assert comparisons and all(c.equal for c in comparisons), (model.name, comparisons)


async def republished(store: EventStore, tenant: str) -> list[dict[str, Any]]:
    """The bodies RabbitMQ delivers when ``tenant``'s events are published again, through an
    exchange and queue of this test's own (deleted after)."""
    exchange = f"acci.events.test-shred-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    try:
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, exchange, routing_key="#")
        with EventPublisher(RABBITMQ_URL, exchange=exchange) as publisher:
            count, _ = await publish_range(store, publisher, after=START, tenant_id=tenant)
        bodies = []
        while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
            bodies.append(json.loads(message[2]))
        assert len(bodies) == count
        return bodies
    finally:
        channel.exchange_delete(exchange)
        connection.close()


async def test_a_tenant_the_store_does_not_know_is_not_shredded_and_its_name_stays_free(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    env = {
        **os.environ,
        "ACCI_DATABASE_URL": database_url,
        "ACCI_MASTER_KEY": KEY,
        "ACCI_MASTER_KEY_ID": "k1",
    }
    typo = f"typo-{uuid.uuid4().hex[:8]}"
    done = await asyncio.to_thread(acci, env, "tenant", "shred", "--tenant", typo, "--yes")
    assert (done.returncode, done.stdout) == (1, ""), done
    assert done.stderr == (
        f"error (not_found): tenant {typo!r} has no events and no data key in this store:"
        " nothing to shred (is the name right?)\n"
    )
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM event_store.tenant_keys WHERE tenant_id = %s", (typo,)
        )
        assert await cur.fetchone() == (0,)  # no tombstone
    # The name is still free: its first sealed event makes its key.
    ring = KeyRing(pool, LocalKeyWrapper("k1", master_key_bytes(KEY)), cache_ttl=0)
    encryption = PayloadEncryption(ring, encrypt=True)
    store = EventStore(pool, encryption=encryption)
    handler = CommandHandler(
        store, AggregateRepository(store, SnapshotStore(pool, encryption=encryption))
    )
    command = CommandInput(
        command_id=uuid.uuid4(), tenant_id=typo, command_type="CreateTenant", payload={"name": "T"}
    )
    outcome = await handler.handle(typo, parse(command), command_id=command.command_id)
    assert outcome.stream_version == 1


async def test_acci_keys_rotate_rewraps_every_live_key_under_the_new_master_key(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    new = new_master_key()
    env = {
        **os.environ,
        "ACCI_DATABASE_URL": database_url,
        "ACCI_MASTER_KEY": new,
        "ACCI_MASTER_KEY_ID": "k2",
        "ACCI_PREVIOUS_MASTER_KEYS": f"k1={KEY}",
    }
    rotated = await asyncio.to_thread(acci, env, "keys", "rotate", "--batch", "1", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["to_rewrap"] == 0
    assert json.loads(rotated.stdout)["rewrapped"] >= 1

    del env["ACCI_PREVIOUS_MASTER_KEYS"]  # no longer needed
    status = await asyncio.to_thread(acci, env, "keys", "status", "--json")
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    assert set(found["live"]) == {"k2"} and found["shredded"] == 1 and found["to_rewrap"] == 0
    # Tenants with a live key: the shredded one is not among them.
    assert found["tenants"] == sum(found["live"].values())
    assert KEY not in status.stdout + status.stderr + rotated.stdout + rotated.stderr

    ring = KeyRing(pool, LocalKeyWrapper("k2", master_key_bytes(new)))
    store = EventStore(pool, encryption=PayloadEncryption(ring))
    kept = [e for e in await store.read_all(limit=1_000) if e.tenant_id.startswith("kept-")]
    assert kept and all(e.readable for e in kept)
