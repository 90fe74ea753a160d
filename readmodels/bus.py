"""The query bus: typed queries in, each dispatched to its handler, answers out.

``build_query_bus`` makes one over a pool the caller holds; ``pooled_query_bus`` opens one with a
pool (and cache) of its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final, TypeVar

import psycopg_pool
import pydantic
from prometheus_client import Histogram
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.db import create_pool
from acci.readmodels.cache import QueryCache
from acci.readmodels.consistency import wait_until_projected
from acci.readmodels.errors import QueryValidationError, ReadModelError
from acci.readmodels.installed import query_handlers
from acci.readmodels.queries import (
    Query,
)
from acci.readmodels.query_times import QueryTimer

R = TypeVar("R", bound=pydantic.BaseModel)
Q = TypeVar("Q", bound=Query[Any])

QUERY_SECONDS: Final = Histogram(
    "acci_query_seconds",
    "Time to answer a query (waiting for projections and the cache included)",
    ["query"],
)


class QueryBus:
    """Dispatches each query to the handler registered for its type.

    With a cache, answers are read through it; a query with ``consistent_with`` first waits
    (at most ``consistency_timeout`` seconds) until the projections it reads have passed that
    position, then skips the cached answer, which may be older than the position.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        cache: QueryCache | None = None,
        consistency_timeout: float = 5.0,
        timer: QueryTimer | None = None,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._timer = timer
        self._consistency_timeout = consistency_timeout
        self._handlers: dict[type[Query[Any]], Callable[[Any], Awaitable[Any]]] = {}

    def register(self, query_type: type[Q], handler: Callable[[Q], Awaitable[Any]]) -> None:
        """Answer queries of ``query_type`` with ``handler`` (replacing any earlier one)."""
        self._handlers[query_type] = handler

    async def ask(self, query: Query[R]) -> R:
        """The answer to ``query``; a ``QueryError`` if it cannot be given."""
        handler = self._handlers.get(type(query))
        if handler is None:
            known = ", ".join(sorted(t.__name__ for t in self._handlers)) or "none"
            raise QueryValidationError(
                f"no handler for query type {type(query).__name__!r} (known: {known})"
            )

        async def load() -> R:
            answer: R = await handler(query)
            return answer

        name = type(query).__name__
        started = time.perf_counter()
        try:
            position = query.consistent_with
            if position is not None:
                await wait_until_projected(
                    self._pool, query.projections, position, timeout=self._consistency_timeout
                )
            if self._cache is None:
                return await load()
            return await self._cache.get_or_load(query, load, fresh=position is not None)
        finally:
            elapsed = time.perf_counter() - started
            QUERY_SECONDS.labels(name).observe(elapsed)
            if self._timer is not None:
                self._timer.record(name, elapsed)


def build_query_bus(
    pool: AsyncConnectionPool,
    *,
    cache: QueryCache | None = None,
    consistency_timeout: float = 5.0,
    timer: QueryTimer | None = None,
) -> QueryBus:
    """A bus answering every installed application's queries, reading through ``pool`` (and
    ``cache``), adding each answer's time to ``timer``'s shared tally if given."""
    bus = QueryBus(pool, cache=cache, consistency_timeout=consistency_timeout, timer=timer)
    for query_type, answer in query_handlers().items():
        bus.register(query_type, answer(pool))
    return bus


@asynccontextmanager
async def pooled_query_bus(
    database_url: str,
    *,
    cache: QueryCache | None = None,
    timer: QueryTimer | None = None,
    pool_min_size: int = 1,
    pool_max_size: int = 8,
    statement_timeout_ms: int = 60_000,
    consistency_timeout: float = 5.0,
    connect_timeout: float = 10.0,
) -> AsyncIterator[QueryBus]:
    """A bus over a pool of its own on ``database_url`` (and over ``cache`` and ``timer``), all
    closed on exit.

    Everything is an explicit argument here; a process opens its configured bus with
    ``acci.workers.runtime.open_query_bus(settings)``. ``ReadModelError`` if PostgreSQL cannot be
    reached within ``connect_timeout`` seconds.
    """
    async with AsyncExitStack() as stack:
        if cache is not None:
            await stack.enter_async_context(cache)
        if timer is not None:
            stack.push_async_callback(timer.aclose)
        pool = await stack.enter_async_context(
            create_pool(
                database_url,
                min_size=pool_min_size,
                max_size=pool_max_size,
                statement_timeout_ms=statement_timeout_ms,
            )
        )
        try:
            # Fail now, not after the pool's own 30 s wait inside the first query.
            await pool.wait(timeout=connect_timeout)
        except psycopg_pool.PoolTimeout:
            where = conninfo_to_dict(database_url)
            raise ReadModelError(
                f"PostgreSQL at {where.get('host', 'localhost')}:{where.get('port', 5432)} did not"
                f" accept a connection within {connect_timeout:.1f} s"
            ) from None
        yield build_query_bus(
            pool, cache=cache, consistency_timeout=consistency_timeout, timer=timer
        )
