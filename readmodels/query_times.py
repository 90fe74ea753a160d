"""How long queries take, tallied in Redis by every process that asks them.

The CLI asks its queries in short-lived processes whose own histograms die with them; each
answer's time is also added to one Redis hash (a histogram's bucket counters, count and sum,
per query type), which the worker serves as ``acci_query_seconds``. Writing never delays or
fails a query: it is sent in the background, dropped while Redis does not answer, and a
process waits for what it sent (at most the socket timeout) only when it closes.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from dataclasses import dataclass
from typing import Final, cast

from prometheus_client import Histogram
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

BUCKETS: Final[tuple[float, ...]] = tuple(Histogram.DEFAULT_BUCKETS[:-1])
"""Upper bounds of the tally's buckets (prometheus_client's defaults; +Inf is implied)."""

_FAILURES: Final = (RedisError, OSError, asyncio.TimeoutError)


def times_key(prefix: str) -> str:
    """The Redis hash holding every query type's ``<query>:b<i>``, ``:count`` and ``:sum``."""
    return f"{prefix}:query_seconds"


@dataclass(frozen=True, slots=True)
class QueryTimes:
    """One query type's tally: non-cumulative counts per bucket (the last is +Inf)."""

    query: str
    buckets: tuple[int, ...]
    count: int
    total: float

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them, ending with +Inf."""
        pairs, running = [], 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.buckets, strict=True):
            running += n
            pairs.append((bound, running))
        return pairs


def shared_times(redis: SyncRedis, prefix: str) -> list[QueryTimes]:
    """Every query type's tally from the shared hash."""
    fields = cast(dict[bytes, bytes], redis.hgetall(times_key(prefix)))
    found: dict[str, dict[str, bytes]] = {}
    for field, value in fields.items():
        query, _, part = field.decode().rpartition(":")
        found.setdefault(query, {})[part] = value
    tallies = []
    for query, parts in sorted(found.items()):
        buckets = tuple(int(parts.get(f"b{i}", b"0")) for i in range(len(BUCKETS) + 1))
        total = float(parts.get("sum", b"0"))
        tallies.append(QueryTimes(query, buckets, int(parts.get("count", b"0")), total))
    return tallies


class QueryTimer:
    """Adds query times to the shared tally in the background; never raises."""

    def __init__(self, redis: Redis, *, prefix: str = "acci", retry_after: float = 5.0) -> None:
        self._redis = redis
        self._key = times_key(prefix)
        self._retry_after = retry_after
        self._skip_until = 0.0
        self._sending: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "acci",
        socket_timeout: float = 0.25,
        retry_after: float = 5.0,
    ) -> QueryTimer:
        """A timer writing to the Redis at ``url``, with short timeouts."""
        redis = Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        return cls(redis, prefix=prefix, retry_after=retry_after)

    def record(self, query: str, seconds: float) -> None:
        """Add one answer's time (sent in the background)."""
        if time.monotonic() < self._skip_until:
            return
        task = asyncio.get_running_loop().create_task(self._send(query, seconds))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, query: str, seconds: float) -> None:
        bucket = bisect.bisect_left(BUCKETS, seconds)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(self._key, f"{query}:b{bucket}", 1)
                pipe.hincrby(self._key, f"{query}:count", 1)
                pipe.hincrbyfloat(self._key, f"{query}:sum", seconds)
                await pipe.execute()
        except _FAILURES:
            # The query cache logs Redis outages; a lost tally entry is not worth another line.
            self._skip_until = time.monotonic() + self._retry_after

    async def aclose(self) -> None:
        """Wait for the times being sent, then close the connection."""
        if self._sending:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._sending, return_exceptions=True)
        await self._redis.aclose()
