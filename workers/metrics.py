"""The worker's Prometheus metrics (served by ``workers/http_endpoint.py``).

Everything is registered on prometheus_client's default registry, which that endpoint serves:
the event store's instruments (``eventstore/instruments.py``), the command metrics
(``workers/metrics_commands.py``), the collectors read at each scrape (projections and the
gap-free horizon from PostgreSQL, ``workers/metrics_projections.py``; the query cache's and the
query times' shared tallies from Redis, here and in ``workers/metrics_queries.py``), the
backup, restore, verify and rebuild families of their activities. The Temporal SDK's own
metrics have an endpoint of their own (``workers/metrics_temporal.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from acci.readmodels.cache import shared_stats
from acci.workers.metrics_projections import DatabaseMetrics, ProjectionActivity
from acci.workers.metrics_queries import shared_query_times
from acci.workers.settings import Settings


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


@contextmanager
def worker_metrics(
    settings: Settings, projections: Sequence[str], activity: ProjectionActivity
) -> Iterator[None]:
    """Serve the worker's scrape-time families until the block exits: the shared cache and
    query tallies (Redis), the projections' lag, state and dead letters and the horizon's
    stall (PostgreSQL, for ``projections``, whose batches ``activity`` watches)."""
    redis_url = settings.redis_url.get_secret_value()
    database = DatabaseMetrics(settings.database_url.get_secret_value(), projections, activity)
    REGISTRY.register(database)
    try:
        with (
            shared_cache_stats(redis_url, settings.cache_prefix),
            shared_query_times(redis_url, settings.cache_prefix),
        ):
            yield
    finally:
        REGISTRY.unregister(database)
        database.close()
