"""The worker's Prometheus metrics (projection lag, the shared cache tally); served by
workers/http_endpoint.py."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Final

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from acci.activities.models import ProjectionBatchResult
from acci.readmodels.cache import shared_stats

log = logging.getLogger(__name__)

PROJECTION_LAG_EVENTS: Final = Gauge(
    "acci_projection_lag_events",
    "Events committed in the event store that the projection has not applied yet"
    " (capped at 10000), including any held back by an open event-writing transaction",
    ["projection"],
)
PROJECTION_LAG_SECONDS: Final = Gauge(
    "acci_projection_lag_seconds",
    "Age of the oldest event the projection has not applied yet (0 when caught up)",
    ["projection"],
)


EVENT_HORIZON_STALL_SECONDS: Final = Gauge(
    "acci_event_horizon_stall_seconds",
    "How long the open event-writing transaction holding the projection's committed events back"
    " from gap-free readers has been open (0 when nothing is held back)",
    ["projection"],
)


def observe_projection(result: ProjectionBatchResult) -> None:
    """Record a projection batch's lag, and the stall behind it."""
    PROJECTION_LAG_EVENTS.labels(result.projection).set(result.lag_events)
    PROJECTION_LAG_SECONDS.labels(result.projection).set(result.lag_seconds)
    EVENT_HORIZON_STALL_SECONDS.labels(result.projection).set(
        result.stall_seconds if result.stalled else 0.0
    )


class SharedCacheStats(Collector):
    """The query cache's hits and misses as counted in Redis by every process that asks queries.

    The CLI asks its queries in short-lived processes, whose own counters die with them; the
    worker serves the shared tally instead, read from Redis at each scrape (nothing when Redis
    does not answer: ``acci_cache_available`` says why).
    """

    def __init__(self, redis_url: str, prefix: str, *, timeout: float = 0.25) -> None:
        self._redis = Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._prefix = prefix

    def collect(self) -> Iterable[Metric]:
        try:
            stats = shared_stats(self._redis, self._prefix)
        except (RedisError, OSError):
            return
        hits = CounterMetricFamily(
            "acci_cache_shared_hits",
            "Queries answered from Redis, by every process using this cache",
            labels=["query"],
        )
        misses = CounterMetricFamily(
            "acci_cache_shared_misses",
            "Queries Redis had no answer for, by every process using this cache",
            labels=["query"],
        )
        ratio = GaugeMetricFamily(
            "acci_cache_shared_hit_ratio",
            "Hits / (hits + misses) of the query cache, by every process using it",
            labels=["query"],
        )
        for s in stats:
            hits.add_metric([s.query], s.hits)
            misses.add_metric([s.query], s.misses)
            ratio.add_metric([s.query], s.ratio)
        yield from (hits, misses, ratio)

    def close(self) -> None:
        self._redis.close()


@contextmanager
def shared_cache_stats(redis_url: str, prefix: str) -> Iterator[None]:
    """Serve the shared cache tally with this process's metrics until the block exits."""
    collector = SharedCacheStats(redis_url, prefix)
    REGISTRY.register(collector)
    try:
        yield
    finally:
        REGISTRY.unregister(collector)
        collector.close()
