"""Cache-aside for query answers in Redis, invalidated by bumping generation counters.

Every cached answer's key carries the current *generations* of what it was read from: for each
projection (read model) the query reads, the generation of the tenant's rows in it
(``<prefix>:gen:<projection>:<tenant>``), or of the whole read model (``…:<projection>:*``) for
lists that span tenants. After a projection commits, the generations of the tenants it changed,
and its global one, are incremented; answers read from other read models stay cached. Readers
read the generations *before* they read PostgreSQL and write their answer under them; if a
change was committed and invalidated in between, the (old) answer lands under generations that
nobody reads any more (deleting keys would let that slow reader re-populate the old value); old
entries expire with their TTL. Keys also carry their read models' *epochs* (``…:<projection>:#``),
bumped when a rebuild switches a read model's version: every answer read from it is unreachable.

The cache never makes a query fail: when Redis does not answer (quickly), the query reads
PostgreSQL, the outage is logged once, counted, and Redis is left alone for a short while.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar, cast

import pydantic
from prometheus_client import Counter, Gauge
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from acci.readmodels.queries import Query

log = logging.getLogger(__name__)

R = TypeVar("R", bound=pydantic.BaseModel)

CACHE_HITS: Final = Counter("acci_cache_hits_total", "Queries answered from Redis", ["query"])
CACHE_MISSES: Final = Counter(
    "acci_cache_misses_total", "Queries Redis had no answer for (read from PostgreSQL)", ["query"]
)
CACHE_ERRORS: Final = Counter(
    "acci_cache_errors_total",
    "Cache operations that failed because Redis did not answer (queries then read PostgreSQL)",
    ["operation"],
)
CACHE_HIT_RATIO: Final = Gauge(
    "acci_cache_hit_ratio", "Hits / (hits + misses) of the query cache since the process started"
)
CACHE_AVAILABLE: Final = Gauge(
    "acci_cache_available", "1 while Redis answers, 0 during an outage (queries read PostgreSQL)"
)

# The generation scope of queries that span tenants (no tenant id can be "*").
GLOBAL_SCOPE: Final = "*"
# The generation of a whole read model, every tenant's answers and the lists (no tenant id can be
# "#"): bumped when its live version is switched.
EPOCH_SCOPE: Final = "#"
# Part of every entry's key: bump it when a result model changes shape, and old entries are
# never read again (instead of being misread).
_ENTRY_FORMAT: Final = 1

_REDIS_FAILURES: Final = (RedisError, OSError)

# A generation key lives a day: when it expires (or Redis loses it), it starts again from the
# clock (see _seed), above every value it had, so entries under the old one are never read again.
_GENERATION_TTL_MS: Final = 86_400_000

# KEYS: the generation keys of the query's projections in its scope, then the stats hash.
# ARGV: a seed for a missing generation, its TTL, the entry key's head and tail (the generations
# go between, joined by '.'), the query type, 1 if the cached answer is not wanted. Returns
# {generations} or {generations, cached answer}, and counts the hit or miss in the hash, which
# every process using this Redis shares.
_LOOKUP: Final = """
local generations = {}
for i = 1, #KEYS - 1 do
  redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2])
  generations[i] = redis.call('GET', KEYS[i])
end
local joined = table.concat(generations, '.')
if ARGV[6] == '1' then
  return {joined}
end
local answer = redis.call('GET', ARGV[3] .. joined .. ARGV[4])
local stats = KEYS[#KEYS]
if answer then
  redis.call('HINCRBY', stats, 'hits:' .. ARGV[5], 1)
  return {joined, answer}
end
redis.call('HINCRBY', stats, 'misses:' .. ARGV[5], 1)
return {joined}
"""


# KEYS: the generation keys to bump. ARGV: a seed for a missing one, its TTL. One command for
# a commit's tenants, however many (a pipeline of two commands per key cost more to build and
# send than the commit it followed); atomic, as MULTI/EXEC was.
_BUMP: Final = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2])
  redis.call('INCR', KEYS[i])
end
return #KEYS
"""


def stats_key(prefix: str) -> str:
    """The Redis hash in which every process counts its hits (``hits:<query>``) and misses."""
    return f"{prefix}:stats"


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Hits and misses of one query type, counted in Redis by every process that asked."""

    query: str
    hits: int
    misses: int

    @property
    def ratio(self) -> float:
        """hits / (hits + misses), 0 before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def shared_stats(redis: SyncRedis, prefix: str) -> list[CacheStats]:
    """Every query type's hits and misses from the shared hash, by query type."""
    counts: dict[str, dict[str, int]] = {}
    fields = cast(dict[bytes, bytes], redis.hgetall(stats_key(prefix)))
    for field, value in fields.items():
        kind, _, query = field.decode().partition(":")
        counts.setdefault(query, {})[kind] = int(value)
    return [
        CacheStats(query, c.get("hits", 0), c.get("misses", 0))
        for query, c in sorted(counts.items())
    ]


class _Tally:
    """Hits and misses of every cache in the process, for the hit-ratio gauge."""

    hits = 0
    misses = 0

    @classmethod
    def ratio(cls) -> float:
        total = cls.hits + cls.misses
        return cls.hits / total if total else 0.0


CACHE_HIT_RATIO.set_function(_Tally.ratio)


def _seed() -> int:
    # A missing generation (first use, or a key Redis evicted) starts at the clock in ns, not at
    # 0: a lost counter restarting at a value it had before would make old entries current again.
    return time.time_ns()


class QueryCache:
    """Query answers in Redis (JSON, with a TTL), keyed by generation; never fails a query."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: float = 60.0,
        prefix: str = "acci",
        retry_after: float = 5.0,
    ) -> None:
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._prefix = prefix
        self._retry_after = retry_after
        kwargs = redis.connection_pool.connection_kwargs
        self._address = f"{kwargs.get('host', kwargs.get('path'))}:{kwargs.get('port', '')}"
        # Circuit breaker: after a failure Redis is not asked again before this (monotonic) time.
        self._skip_until = 0.0
        self._down_since: float | None = None
        # (projection, scope) pairs whose invalidation has not reached Redis yet; nothing is
        # served from the cache by this process until it has.
        self._pending: set[tuple[str, str]] = set()
        self._stats_key = stats_key(prefix)
        self._lookup_script = redis.register_script(_LOOKUP)
        self._bump_script = redis.register_script(_BUMP)
        # One invalidation in flight at a time: the keys of commits made meanwhile (other
        # projections, the next batch) wait for it and go together in the next one.
        self._sending = asyncio.Lock()
        CACHE_AVAILABLE.set(1)  # until Redis fails to answer

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = 0.25,
        ttl_seconds: float = 60.0,
        prefix: str = "acci",
        retry_after: float = 5.0,
    ) -> QueryCache:
        """A cache on a Redis URL, with short timeouts so that a dead Redis costs little."""
        redis = Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # One immediate reconnect absorbs a pooled connection that Redis closed (a restart,
            # an idle timeout); a timeout is not retried, so a hung Redis costs one timeout.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return cls(redis, ttl_seconds=ttl_seconds, prefix=prefix, retry_after=retry_after)

    async def __aenter__(self) -> QueryCache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()

    @property
    def available(self) -> bool:
        """False during an outage (from the first failure until Redis answers again)."""
        return self._down_since is None

    async def get_or_load(
        self,
        query: Query[R],
        load: Callable[[], Awaitable[R]],
        *,
        fresh: bool = False,
        scope: str | None = None,
    ) -> R:
        """The cached answer to ``query``, or ``load()``'s, which is then cached.

        ``fresh`` skips the cached answer (a read-your-writes query) but still caches the new one.
        ``scope``: the tenant the answer was read in, if not the query's own (a tenant's user's
        part of a query that spans tenants: cached apart, invalidated with their tenant)."""
        key, cached = await self._lookup(query, fresh=fresh, scope=scope)
        if cached is not None:
            return cached
        result = await load()
        if key is not None:
            await self._store(key, result)
        return result

    async def invalidate(self, projection: str, tenant_ids: Iterable[str]) -> None:
        """Make every cached answer read from ``projection`` about these tenants, and every
        cross-tenant one read from it, unreachable.

        Call it after the change is committed; when it returns, Redis has the new generations
        (invalidations made at the same time go together, in one round trip). It never raises:
        if Redis does not answer, the invalidation is kept and sent before this process serves
        anything from the cache again.
        """
        self._pending.update((projection, tenant) for tenant in tenant_ids)
        self._pending.add((projection, GLOBAL_SCOPE))
        await self.flush()

    async def invalidate_read_model(self, projection: str) -> None:
        """Make every cached answer read from ``projection``, of every tenant, unreachable (its
        live version was switched). Never raises, as ``invalidate``."""
        self._pending.add((projection, EPOCH_SCOPE))
        await self.flush()

    @property
    def pending(self) -> bool:
        """True while some invalidation has not reached Redis (it is down, or was)."""
        return bool(self._pending)

    async def flush(self) -> None:
        """Send the invalidations Redis missed, if there are any and Redis may be tried.

        A worker calls this now and then: without it, an invalidation lost in an outage would
        wait for the next commit, while other processes read the stale answers once Redis is
        back. Never raises.
        """
        if not self._pending or not self._may_try():
            return
        async with self._sending:
            if not self._pending or not self._may_try():
                return  # sent by the invalidation this one waited for, or Redis is down
            try:
                await self._send_pending()
            except _REDIS_FAILURES as e:
                self._failed("invalidate", e)
            else:
                self._succeeded()

    async def _lookup(
        self, query: Query[R], *, fresh: bool, scope: str | None
    ) -> tuple[str | None, R | None]:  # the key (None: leave Redis alone), a cached answer
        if not self._may_try():
            return None, None
        name = type(query).__name__
        scope = scope or query.tenant_scope or GLOBAL_SCOPE
        head, tail = self._entry_key_parts(query, scope)
        generations = [
            self._generation_key(p, s) for p in query.projections for s in (scope, EPOCH_SCOPE)
        ]
        try:
            if self._pending:
                await self._send_pending()
            # One round trip: the generations, the entry under them, and the tally.
            reply = await self._lookup_script(
                keys=[*generations, self._stats_key],
                args=[_seed(), _GENERATION_TTL_MS, head, tail, name, int(fresh)],
            )
        except _REDIS_FAILURES as e:
            self._failed("get", e)
            return None, None
        self._succeeded()
        key = f"{head}{reply[0].decode()}{tail}"
        raw = reply[1] if len(reply) > 1 else None
        if fresh:
            return key, None
        if raw is not None:
            try:
                cached = cast(R, query.result_type.model_validate_json(raw))
            except pydantic.ValidationError:
                log.debug("unreadable cache entry, reading PostgreSQL", extra={"key": key})
            else:
                CACHE_HITS.labels(name).inc()
                _Tally.hits += 1
                return key, cached
        CACHE_MISSES.labels(name).inc()
        _Tally.misses += 1
        return key, None

    async def _store(self, key: str, result: pydantic.BaseModel) -> None:
        if not self._may_try():
            return
        try:
            await self._redis.set(key, result.model_dump_json(), px=self._ttl_ms)
        except _REDIS_FAILURES as e:
            self._failed("set", e)
        else:
            self._succeeded()

    async def _send_pending(self) -> None:
        pending = set(self._pending)
        keys = [self._generation_key(projection, scope) for projection, scope in sorted(pending)]
        await self._bump_script(keys=keys, args=[_seed(), _GENERATION_TTL_MS])
        self._pending -= pending

    def _generation_key(self, projection: str, scope: str) -> str:
        return f"{self._prefix}:gen:{projection}:{scope}"

    def _entry_key_parts(self, query: Query[Any], scope: str) -> tuple[str, str]:
        # An entry's key is head + generation + tail. The same question always has the same
        # key; whether it waits for a position does not change the answer, so consistent_with
        # is not part of it.
        text = query.model_dump_json(exclude={"consistent_with"})
        digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        name = type(query).__name__
        return f"{self._prefix}:q{_ENTRY_FORMAT}:{scope}:", f":{name}:{digest}"

    def _may_try(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, operation: str, error: BaseException) -> None:
        CACHE_ERRORS.labels(operation).inc()
        self._skip_until = time.monotonic() + self._retry_after
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        CACHE_AVAILABLE.set(0)
        log.warning(
            "query cache unavailable; answering queries from PostgreSQL",
            extra={
                "redis": self._address,
                "operation": operation,
                "error": str(error) or type(error).__name__,
                "retry_after_s": self._retry_after,
            },
        )

    def _succeeded(self) -> None:
        if self._down_since is None:
            return
        outage = time.monotonic() - self._down_since
        self._down_since = None
        CACHE_AVAILABLE.set(1)
        log.info(
            "query cache available again",
            extra={"redis": self._address, "outage_s": round(outage, 3)},
        )
