"""The query cache on a real Redis: hits, generation invalidation, races, and Redis going away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import redis
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis as AsyncRedis

from acci.eventstore.records import Position
from acci.readmodels.bus import QueryBus, build_query_bus
from acci.readmodels.cache import CacheStats, QueryCache, shared_stats
from acci.readmodels.read_model import QueryHandler
from acci.readmodels.tenancy.tenant_activity import GetTenantActivity
from acci.readmodels.tenancy.tenants import (
    GetTenantDetails,
    ListTenants,
    TenantView,
    tenant_details,
)
from acci.readmodels.tenancy.users import GetUser, ListTenantUsers
from acci.workers.metrics import SharedCacheStats
from tests.integration.query_rows import (
    REDIS_URL,
    at,
    delete_keys,
    put_activity,
    put_tenant,
    put_user,
    require_redis,
    set_checkpoint,
)
from tests.workflows.conftest import eventually

UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def total(counter: str) -> float:
    """A counter's value summed over all its labels."""
    return sum(
        s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == f"{counter}_total"
    )


@pytest_asyncio.fixture(scope="module")
async def read_models(pool: AsyncConnectionPool) -> AsyncConnectionPool:
    require_redis()
    return pool


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key namespace of this test's own on the shared Redis, removed afterwards."""
    name = f"acci-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_keys(name)


@pytest_asyncio.fixture
async def cache(prefix: str) -> AsyncIterator[QueryCache]:
    async with QueryCache.from_url(REDIS_URL, prefix=prefix, retry_after=0.05) as cache:
        yield cache


@pytest.fixture
def bus(read_models: AsyncConnectionPool, cache: QueryCache) -> QueryBus:
    return build_query_bus(read_models, cache=cache, consistency_timeout=5.0)


@pytest.fixture(scope="module")
def details(read_models: AsyncConnectionPool) -> QueryHandler:
    """The GetTenantDetails handler, reading PostgreSQL."""
    return tenant_details(read_models)


async def test_the_second_ask_is_answered_from_the_cache(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_tenant(read_models, tenant, name="Cached")
    query = GetTenantDetails(tenant_id=tenant)
    hits = sample("acci_cache_hits_total", query="GetTenantDetails")
    misses = sample("acci_cache_misses_total", query="GetTenantDetails")

    assert (await bus.ask(query)).name == "Cached"
    assert sample("acci_cache_misses_total", query="GetTenantDetails") == misses + 1
    # Changed behind the cache's back (no invalidation): the cached answer is served.
    await put_tenant(read_models, tenant, name="Changed")
    assert (await bus.ask(query)).name == "Cached"
    assert sample("acci_cache_hits_total", query="GetTenantDetails") == hits + 1


async def test_hit_and_miss_counters_and_the_hit_ratio_move(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_user(read_models, tenant, "u-1", email="a@x.io")
    query = GetUser(tenant_id=tenant, user_id="u-1")
    hits, misses = total("acci_cache_hits"), total("acci_cache_misses")

    for _ in range(3):
        await bus.ask(query)

    assert (total("acci_cache_hits"), total("acci_cache_misses")) == (hits + 2, misses + 1)
    ratio = sample("acci_cache_hit_ratio")
    assert ratio == pytest.approx((hits + 2) / (hits + misses + 3))


async def test_every_process_counts_its_hits_and_misses_in_one_shared_tally(
    bus: QueryBus, read_models: AsyncConnectionPool, prefix: str
) -> None:
    tenant = new_id()
    await put_tenant(read_models, tenant, name="Shared")
    query = GetTenantDetails(tenant_id=tenant)
    # A second cache on the same prefix stands for another process (a CLI query, say).
    async with QueryCache.from_url(REDIS_URL, prefix=prefix) as other_cache:
        other = build_query_bus(read_models, cache=other_cache)
        await bus.ask(query)  # miss
        await other.ask(query)  # hit
        await other.ask(query)  # hit
        await set_checkpoint(read_models, "tenants", Position(1, 1))
        await other.ask(query.model_copy(update={"consistent_with": Position(1, 1)}))  # bypass

    with redis.Redis.from_url(REDIS_URL) as client:
        assert shared_stats(client, prefix) == [CacheStats("GetTenantDetails", hits=2, misses=1)]
        collector = SharedCacheStats(REDIS_URL, prefix)
        families = {f.name: f for f in collector.collect()}
        collector.close()
    samples = {(s.name, s.labels["query"]): s.value for f in families.values() for s in f.samples}
    assert samples[("acci_cache_shared_hits_total", "GetTenantDetails")] == 2
    assert samples[("acci_cache_shared_misses_total", "GetTenantDetails")] == 1
    assert samples[("acci_cache_shared_hit_ratio", "GetTenantDetails")] == pytest.approx(2 / 3)


def test_the_shared_tally_is_left_out_of_the_metrics_while_redis_is_down() -> None:
    collector = SharedCacheStats(UNREACHABLE_REDIS_URL, "acci-test-down")
    assert list(collector.collect()) == []
    collector.close()


async def test_after_invalidate_no_query_about_the_tenant_returns_an_old_answer(
    bus: QueryBus, cache: QueryCache, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_tenant(read_models, tenant, name="Old", user_count=1)
    await put_user(read_models, tenant, "u-1", email="old@x.io", roles=["member"])
    await put_activity(read_models, tenant, "UserRegistered", 1, at(1))
    questions = [
        GetTenantDetails(tenant_id=tenant),
        ListTenants(limit=500),
        GetUser(tenant_id=tenant, user_id="u-1"),
        ListTenantUsers(tenant_id=tenant),
        GetTenantActivity(tenant_id=tenant),
    ]
    before = [await bus.ask(q) for q in questions]

    await put_tenant(read_models, tenant, name="New", user_count=2)
    await put_user(read_models, tenant, "u-1", email="new@x.io", roles=["admin"])
    await put_activity(read_models, tenant, "UserRegistered", 2, at(2))
    assert [await bus.ask(q) for q in questions] == before  # cached
    for projection in ("tenants", "users", "tenant_activity"):
        await cache.invalidate(projection, [tenant])

    details, tenants, user, users, activity = [await bus.ask(q) for q in questions]
    assert isinstance(details, TenantView)
    assert (details.name, details.user_count) == ("New", 2)
    assert [t.name for t in tenants.items if t.tenant_id == tenant] == ["New"]
    assert (user.email, user.roles) == ("new@x.io", ("admin",))
    assert [u.email for u in users.items] == ["new@x.io"]
    assert activity.total_events == 2


async def test_a_projection_invalidates_only_answers_read_from_its_own_read_model(
    bus: QueryBus, cache: QueryCache, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_tenant(read_models, tenant, name="Old")
    await put_user(read_models, tenant, "u-1", email="old@x.io")
    details, user = GetTenantDetails(tenant_id=tenant), GetUser(tenant_id=tenant, user_id="u-1")
    await bus.ask(details)
    await bus.ask(user)

    await put_tenant(read_models, tenant, name="New")
    await put_user(read_models, tenant, "u-1", email="new@x.io")
    await cache.invalidate("tenants", [tenant])

    assert (await bus.ask(details)).name == "New"
    assert (await bus.ask(user)).email == "old@x.io"  # the users read model did not commit
    await cache.invalidate("users", [tenant])
    assert (await bus.ask(user)).email == "new@x.io"


async def test_invalidating_one_tenant_keeps_the_other_tenants_answers_cached(
    bus: QueryBus, cache: QueryCache, read_models: AsyncConnectionPool
) -> None:
    changed, untouched = new_id(), new_id()
    for tenant in (changed, untouched):
        await put_tenant(read_models, tenant)
        await bus.ask(GetTenantDetails(tenant_id=tenant))
    await cache.invalidate("tenants", [changed])

    hits = sample("acci_cache_hits_total", query="GetTenantDetails")
    misses = sample("acci_cache_misses_total", query="GetTenantDetails")
    await bus.ask(GetTenantDetails(tenant_id=untouched))
    assert sample("acci_cache_hits_total", query="GetTenantDetails") == hits + 1
    await bus.ask(GetTenantDetails(tenant_id=changed))
    assert sample("acci_cache_misses_total", query="GetTenantDetails") == misses + 1


async def test_a_reader_that_read_before_a_change_cannot_bring_the_old_answer_back(
    bus: QueryBus,
    cache: QueryCache,
    prefix: str,
    details: QueryHandler,
    read_models: AsyncConnectionPool,
) -> None:
    tenant = new_id()
    await put_tenant(read_models, tenant, name="Old")
    query = GetTenantDetails(tenant_id=tenant)
    has_read, may_write = asyncio.Event(), asyncio.Event()

    async def slow_load() -> TenantView:
        answer = await details(query)  # reads PostgreSQL: "Old"
        has_read.set()
        await may_write.wait()
        return answer

    # A cache miss: the slow reader reads the old row, then stalls before caching it ...
    slow = asyncio.create_task(cache.get_or_load(query, slow_load))
    await asyncio.wait_for(has_read.wait(), timeout=5)
    # ... while the projection commits the change and invalidates ...
    await put_tenant(read_models, tenant, name="New")
    await cache.invalidate("tenants", [tenant])
    # ... and only then does the slow reader write its old answer into the cache.
    may_write.set()
    assert (await asyncio.wait_for(slow, timeout=5)).name == "Old"

    stored = await _cached_names(prefix, tenant)
    assert "Old" in stored  # the stale write did happen (under the old generation) ...
    for _ in range(2):  # ... and nobody sees it: neither the miss nor the following hit.
        assert (await bus.ask(query)).name == "New"


async def _cached_names(prefix: str, tenant: str) -> list[str]:
    """The tenant names of every cached answer about ``tenant``, whatever its generation."""
    names = []
    async with AsyncRedis.from_url(REDIS_URL) as client:
        async for key in client.scan_iter(match=f"{prefix}:q*:{tenant}:*"):
            raw = await client.get(key)
            if raw is not None:
                names.append(TenantView.model_validate_json(raw).name)
    return names


async def test_a_consistent_query_skips_an_older_cached_answer_and_caches_the_newer(
    bus: QueryBus, read_models: AsyncConnectionPool
) -> None:
    tenant = new_id()
    await put_tenant(read_models, tenant, name="Before")
    await set_checkpoint(read_models, "tenants", Position(800, 1))
    assert (await bus.ask(GetTenantDetails(tenant_id=tenant))).name == "Before"  # now cached

    asked = asyncio.create_task(
        bus.ask(GetTenantDetails(tenant_id=tenant, consistent_with=Position(801, 1)))
    )
    await eventually(
        lambda: sample("acci_query_consistency_waiting") == 1,
        what="the query to wait for the projection",
    )
    # The projection applies the change with its checkpoint; no invalidation has happened yet.
    async with read_models.connection() as conn, conn.transaction():
        await put_tenant(read_models, tenant, name="After", conn=conn)
        await set_checkpoint(read_models, "tenants", Position(801, 1), conn=conn)

    assert (await asyncio.wait_for(asked, timeout=5)).name == "After"
    assert (await bus.ask(GetTenantDetails(tenant_id=tenant))).name == "After"


# --- Redis unavailable ---------------------------------------------------------------------------


def _outage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("query cache unavailable")]


async def test_with_redis_unreachable_queries_read_postgres_and_say_so_once(
    read_models: AsyncConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = new_id()
    # retry_after=0: every query tries Redis again, and still only the first failure is logged.
    async with QueryCache.from_url(UNREACHABLE_REDIS_URL, retry_after=0) as dead:
        bus = build_query_bus(read_models, cache=dead)
        errors = total("acci_cache_errors")
        started = time.monotonic()
        for i in range(10):
            await put_tenant(read_models, tenant, name=f"Name {i}")
            assert (await bus.ask(GetTenantDetails(tenant_id=tenant))).name == f"Name {i}"
        await dead.invalidate("tenants", [tenant])  # does not raise
        elapsed = time.monotonic() - started

    assert not dead.available
    assert sample("acci_cache_available") == 0
    assert total("acci_cache_errors") >= errors + 10
    [warning] = _outage_warnings(caplog)
    assert warning.levelname == "WARNING"
    assert warning.__dict__["redis"] == "127.0.0.1:1"
    assert elapsed < 5, f"ten queries with Redis down took {elapsed:.1f} s"


class PartitionableProxy:
    """A TCP proxy in front of the real Redis whose link the test can cut and restore."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every open link and refuse new ones (a partition)."""
        self._cut = True
        for writer in list(self._writers):
            writer.close()

    def restore(self) -> None:
        self._cut = False

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._cut:
            client_w.close()
            return
        upstream_r, upstream_w = await asyncio.open_connection(*self._upstream)
        self._writers |= {client_w, upstream_w}
        try:
            await asyncio.gather(self._pipe(client_r, upstream_w), self._pipe(upstream_r, client_w))
        finally:
            self._writers -= {client_w, upstream_w}

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


async def test_a_lost_invalidation_is_sent_before_the_cache_answers_again(
    prefix: str, details: QueryHandler, read_models: AsyncConnectionPool
) -> None:
    proxy = PartitionableProxy(REDIS_URL)
    await proxy.start()
    tenant = new_id()
    await put_tenant(read_models, tenant, name="Old")
    query = GetTenantDetails(tenant_id=tenant)

    async def load() -> TenantView:
        return await details(query)

    try:
        async with (
            QueryCache.from_url(
                f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, retry_after=0.05
            ) as projector,
            QueryCache.from_url(REDIS_URL, prefix=prefix) as elsewhere,
        ):
            assert (await projector.get_or_load(query, load)).name == "Old"
            proxy.cut()
            await put_tenant(read_models, tenant, name="New")
            await projector.invalidate("tenants", [tenant])  # cannot reach Redis; does not raise
            assert not projector.available
            # Another process still gets the old answer: the invalidation has not arrived.
            assert (await elsewhere.get_or_load(query, load)).name == "Old"

            proxy.restore()

            async def recovered() -> bool:
                assert (await projector.get_or_load(query, load)).name == "New"
                return projector.available

            await eventually(recovered, what="the cache to use Redis again")
            # The kept invalidation went out first: no process sees the old answer now.
            assert (await elsewhere.get_or_load(query, load)).name == "New"
    finally:
        await proxy.close()


class LocalRedis:
    """The local Redis server, stopped and started the way CI runs it."""

    def __init__(self, url: str) -> None:
        self.port = urlsplit(url).port or 6379
        self._client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def answers(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        self._wait_until(lambda: not self.answers(), "Redis to stop")

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
                "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
            ],
            capture_output=True,
            timeout=10,
            check=True,
        )  # fmt: skip
        self._wait_until(self.answers, "Redis to answer again")

    @staticmethod
    def _wait_until(condition: object, what: str, within: float = 15.0) -> None:
        assert callable(condition)
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {within:.0f}s waiting for {what}")
            time.sleep(0.02)


@pytest.fixture
def local_redis() -> Iterator[LocalRedis]:
    """The local Redis, always running again when the test ends (whatever it did)."""
    require_redis()
    server = LocalRedis(REDIS_URL)
    try:
        yield server
    finally:
        if not server.answers():
            server.start()


async def test_queries_keep_answering_while_redis_restarts(
    local_redis: LocalRedis,
    prefix: str,
    read_models: AsyncConnectionPool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="acci.readmodels.cache")
    tenant = new_id()
    await put_tenant(read_models, tenant, name="One")
    query = GetTenantDetails(tenant_id=tenant)
    async with QueryCache.from_url(REDIS_URL, prefix=prefix, retry_after=0.05) as cache:
        bus = build_query_bus(read_models, cache=cache)
        await bus.ask(query)
        assert cache.available

        await asyncio.to_thread(local_redis.stop)
        errors = total("acci_cache_errors")
        await put_tenant(read_models, tenant, name="Two")
        for _ in range(5):
            assert (await bus.ask(query)).name == "Two"  # from PostgreSQL
        await cache.invalidate("tenants", [tenant])
        assert not cache.available
        assert total("acci_cache_errors") > errors
        assert len(_outage_warnings(caplog)) == 1

        await asyncio.to_thread(local_redis.start)

        async def recovered() -> bool:
            assert (await bus.ask(query)).name == "Two"
            return cache.available

        await eventually(recovered, what="the cache to use Redis again")
        back = [r for r in caplog.records if r.getMessage() == "query cache available again"]
        assert len(back) == 1 and len(_outage_warnings(caplog)) == 1

        hits = sample("acci_cache_hits_total", query="GetTenantDetails")
        await bus.ask(query)
        await bus.ask(query)
        assert sample("acci_cache_hits_total", query="GetTenantDetails") > hits
