"""``acci_query_seconds`` as tallied in Redis by every process that asks queries.

The worker serves the shared tally (``readmodels/query_times.py``) under the name each process
also uses for its own histogram; while it does, the process's own ``acci_query_seconds`` is
taken off the registry (its queries are in the tally too), so the name is served once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from acci.readmodels.bus import QUERY_SECONDS
from acci.readmodels.query_times import shared_times

_HELP = (
    "Time to answer a query (waiting for projections and the cache included), by every process"
    " using this Redis (the CLI's too)"
)


class SharedQueryTimes(Collector):
    """Serves the shared tally, read from Redis at each scrape (nothing if Redis does not
    answer within ``timeout`` seconds)."""

    def __init__(self, redis_url: str, prefix: str, *, timeout: float = 0.25) -> None:
        self._redis = Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._prefix = prefix

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily("acci_query_seconds", _HELP, labels=["query"])]

    def collect(self) -> Iterable[Metric]:
        try:
            tallies = shared_times(self._redis, self._prefix)
        except (RedisError, OSError):
            return
        family = HistogramMetricFamily("acci_query_seconds", _HELP, labels=["query"])
        for t in tallies:
            family.add_metric([t.query], t.cumulative(), t.total)
        yield family

    def close(self) -> None:
        self._redis.close()


@contextmanager
def shared_query_times(redis_url: str, prefix: str) -> Iterator[None]:
    """Serve the shared query tally instead of this process's own histogram until the block
    exits."""
    collector = SharedQueryTimes(redis_url, prefix)
    REGISTRY.unregister(QUERY_SECONDS)
    REGISTRY.register(collector)
    try:
        yield
    finally:
        REGISTRY.unregister(collector)
        REGISTRY.register(QUERY_SECONDS)
        collector.close()
