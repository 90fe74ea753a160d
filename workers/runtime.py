"""Builds ACCI's parts from the settings: the event store and its pool, the query cache and the
query bus. The one place that wires dependencies together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from acci.domain.principals import Principal
from acci.eventstore.db import create_pool, ensure_database
from acci.eventstore.encryption import PayloadEncryption
from acci.eventstore.keyring import KeyRing
from acci.eventstore.keys import LocalKeyWrapper, master_key_bytes
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.readmodels.bus import IN_PROCESS, QueryBus, pooled_query_bus
from acci.readmodels.cache import QueryCache
from acci.readmodels.query_times import QueryTimer
from acci.readmodels.schema import prepare_database
from acci.workers.apps import app_names, load_applications
from acci.workers.settings import Settings, app_database_url, previous_master_keys


@dataclass(frozen=True, slots=True)
class Stores:
    """An open pool and the stores built on it."""

    pool: AsyncConnectionPool
    store: EventStore
    snapshots: SnapshotStore
    repository: AggregateRepository


@dataclass(frozen=True, slots=True)
class EventStoreRuntime(Stores):
    """The stores as the tables' owner (cross-tenant work: projections, jobs, operators'
    tools), and ``app``: the same stores as acci_app, for tenant-scoped work (command
    handling), where row-level security lets a transaction see only its own tenant."""

    app: Stores


@asynccontextmanager
async def open_event_store(
    settings: Settings, *, migrate_schema: bool = True
) -> AsyncIterator[EventStoreRuntime]:
    """Install the configured applications, create the database if needed, migrate it (and
    create the applications' read-model tables), and yield the stores over an open pool."""
    load_applications(app_names(settings.apps))
    url = settings.database_url.get_secret_value()
    await ensure_database(url)
    async with _pool(settings, url) as pool:
        if migrate_schema:
            await prepare_database(pool)  # creates acci_app (migration 012) on a new server
        async with _pool(settings, app_database_url(settings)) as app_pool:
            owner, app = _stores(settings, pool), _stores(settings, app_pool)
            try:
                yield EventStoreRuntime(
                    owner.pool, owner.store, owner.snapshots, owner.repository, app=app
                )
            finally:
                # Snapshots being written in the background, before the pools close.
                await app.repository.drain()
                await owner.repository.drain()


def _pool(settings: Settings, url: str) -> AsyncConnectionPool:
    return create_pool(
        url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        idle_in_transaction_timeout_ms=settings.db_idle_in_transaction_timeout_ms,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )


def _stores(settings: Settings, pool: AsyncConnectionPool) -> Stores:
    # The key ring reads tenant keys on the stores' own pool: as acci_app, row-level security
    # lets it see only the tenant a transaction works for.
    encryption = payload_encryption(settings, pool)
    store = EventStore(
        pool,
        max_payload_bytes=settings.max_payload_bytes,
        max_events_per_append=settings.max_events_per_append,
        encryption=encryption,
    )
    snapshots = SnapshotStore(pool, encryption=encryption)
    repository = AggregateRepository(
        store, snapshots, snapshot_after=settings.snapshot_after_events
    )
    return Stores(pool, store, snapshots, repository)


def key_wrapper(settings: Settings) -> LocalKeyWrapper | None:
    """The configured master keys (the current one and any previous ones), or None if no
    master key is configured. A KMS-backed ``KeyWrapper`` would be built here instead."""
    if settings.master_key is None:
        return None
    previous = {
        key_id: master_key_bytes(key) for key_id, key in previous_master_keys(settings).items()
    }
    return LocalKeyWrapper(
        settings.master_key_id,
        master_key_bytes(settings.master_key.get_secret_value()),
        previous=previous,
    )


def payload_encryption(settings: Settings, pool: AsyncConnectionPool) -> PayloadEncryption:
    """How the stores over ``pool`` seal and open payloads, as the settings say."""
    wrapper = key_wrapper(settings)
    keyring = (
        None if wrapper is None else KeyRing(pool, wrapper, cache_ttl=settings.data_key_cache_ttl_s)
    )
    return PayloadEncryption(
        keyring, encrypt=settings.encryption, shredded_events=settings.shredded_events
    )


def query_cache(settings: Settings) -> QueryCache:
    """The Redis query cache, configured as the settings say."""
    return QueryCache.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.cache_socket_timeout_ms / 1000,
        ttl_seconds=settings.cache_ttl_seconds,
        retry_after=settings.cache_retry_after_ms / 1000,
        prefix=settings.cache_prefix,
    )


def query_timer(settings: Settings) -> QueryTimer:
    """The shared tally of query times, in the cache's Redis under the cache's prefix."""
    return QueryTimer.from_url(
        settings.redis_url.get_secret_value(),
        prefix=settings.cache_prefix,
        socket_timeout=settings.cache_socket_timeout_ms / 1000,
        retry_after=settings.cache_retry_after_ms / 1000,
    )


@asynccontextmanager
async def open_query_bus(
    settings: Settings,
    *,
    pool_max_size: int = 8,
    cached: bool = True,
    principal: Principal = IN_PROCESS,
) -> AsyncIterator[QueryBus]:
    """The query bus on the configured PostgreSQL, through the Redis cache if ``cached`` (its
    answers' times go to the shared tally in Redis that the worker serves, cached or not): the
    one way a process (the CLI, the demo) opens a bus of its own; it answers every configured
    application's queries."""
    load_applications(app_names(settings.apps))
    async with pooled_query_bus(
        settings.database_url.get_secret_value(),
        app_database_url=app_database_url(settings),
        principal=principal,
        cache=query_cache(settings) if cached else None,
        timer=query_timer(settings),
        pool_max_size=pool_max_size,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        consistency_timeout=settings.query_consistency_timeout_ms / 1000,
    ) as query_bus:
        yield query_bus
