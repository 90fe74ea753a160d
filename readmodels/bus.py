"""The query bus: typed queries in, each dispatched to its handler, answers out.

Every query is asked by a principal (``domain/principals.py``). A query about one tenant is
answered only for a principal who may see that tenant (else ``QueryAuthorizationError``), and
inside ``answering_for(tenant)``: read through the app role's ``TenantScopedPool``, row-level
security shows the handler that tenant's rows only. A query spanning tenants (the tenant list)
is answered across tenants, through the owner's pool, for a system administrator; for a
tenant's user it is answered inside their own tenant, so they see only what is theirs.

``build_query_bus`` makes one over pools the caller holds; ``pooled_query_bus`` opens one with
pools (and cache) of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final, TypeVar

import psycopg_pool
import pydantic
from prometheus_client import Histogram
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from acci.domain.principals import Principal
from acci.eventstore.db import create_pool, refusal
from acci.readmodels.cache import QueryCache
from acci.readmodels.consistency import wait_until_projected
from acci.readmodels.errors import QueryAuthorizationError, QueryValidationError, ReadModelError
from acci.readmodels.installed import query_handlers
from acci.readmodels.queries import (
    Query,
)
from acci.readmodels.query_scope import TenantScopedPool, answering_for
from acci.readmodels.query_times import QueryTimer

R = TypeVar("R", bound=pydantic.BaseModel)
Q = TypeVar("Q", bound=Query[Any])

QUERY_SECONDS: Final = Histogram(
    "acci_query_seconds",
    "Time to answer a query (waiting for projections and the cache included)",
    ["query"],
)


# Who asks when a caller in the process does not say: a process holding the database pools
# is trusted as a system principal (as psql on a local socket is).
IN_PROCESS: Final = Principal.service("in-process")
# A pool not up after this long is asked why (a refusal comes at once; an outage is waited out).
_PROBE_AFTER: Final = 1.0

Handler = Callable[[Any], Awaitable[Any]]


class QueryBus:
    """Dispatches each query to the handler registered for its type, for the principal asking.

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
        principal: Principal = IN_PROCESS,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._timer = timer
        self._consistency_timeout = consistency_timeout
        self._principal = principal
        # Per query type: its handler within a tenant, and across tenants.
        self._handlers: dict[type[Query[Any]], tuple[Handler, Handler]] = {}

    def register(
        self,
        query_type: type[Q],
        handler: Callable[[Q], Awaitable[Any]],
        *,
        across_tenants: Callable[[Q], Awaitable[Any]] | None = None,
    ) -> None:
        """Answer queries of ``query_type`` with ``handler`` (replacing any earlier one); a
        system administrator's query spanning tenants with ``across_tenants`` if given."""
        self._handlers[query_type] = (handler, across_tenants or handler)

    async def ask(self, query: Query[R], *, principal: Principal | None = None) -> R:
        """The answer to ``query`` for ``principal`` (default: the bus's own); a
        ``QueryError`` if it cannot be given, ``QueryAuthorizationError`` if not to them."""
        handlers = self._handlers.get(type(query))
        if handlers is None:
            known = ", ".join(sorted(t.__name__ for t in self._handlers)) or "none"
            raise QueryValidationError(
                f"no handler for query type {type(query).__name__!r} (known: {known})"
            )
        scope = _scope(query, principal or self._principal)
        handler = handlers[0] if scope is not None else handlers[1]

        async def load() -> R:
            with answering_for(scope):
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
            return await self._cache.get_or_load(
                query, load, fresh=position is not None, scope=scope
            )
        finally:
            elapsed = time.perf_counter() - started
            QUERY_SECONDS.labels(name).observe(elapsed)
            if self._timer is not None:
                self._timer.record(name, elapsed)


def _scope(query: Query[Any], principal: Principal) -> str | None:
    """The tenant ``query`` is answered in for ``principal`` (None: across tenants)."""
    tenant = query.tenant_scope
    if tenant is not None:
        if not principal.may_see(tenant):
            raise QueryAuthorizationError(
                f"{principal.describe()} may not read the data of tenant {tenant!r}"
                f" ({type(query).__name__})"
            )
        return tenant
    if principal.is_system_admin:
        return None
    if principal.tenant_id is None:
        raise QueryAuthorizationError(
            f"{principal.describe()} is neither a system administrator nor a tenant's user:"
            f" it may not ask {type(query).__name__}"
        )
    return principal.tenant_id  # a tenant's user sees their own tenant's part of the answer


def build_query_bus(
    pool: AsyncConnectionPool,
    *,
    admin_pool: AsyncConnectionPool | None = None,
    cache: QueryCache | None = None,
    consistency_timeout: float = 5.0,
    timer: QueryTimer | None = None,
    principal: Principal = IN_PROCESS,
) -> QueryBus:
    """A bus answering every installed application's queries for ``principal`` (unless a
    query names another), reading through ``pool`` within a tenant (the app role's
    ``TenantScopedPool`` in a process; the owner's in tests of the handlers) and through
    ``admin_pool`` (the owner's; default ``pool``) across tenants, and through ``cache``,
    adding each answer's time to ``timer``'s shared tally if given."""
    bus = QueryBus(
        pool,
        cache=cache,
        consistency_timeout=consistency_timeout,
        timer=timer,
        principal=principal,
    )
    for query_type, answer in query_handlers().items():
        across = None if admin_pool is None else answer(admin_pool)
        bus.register(query_type, answer(pool), across_tenants=across)
    return bus


@asynccontextmanager
async def pooled_query_bus(
    database_url: str,
    *,
    app_database_url: str,
    principal: Principal = IN_PROCESS,
    cache: QueryCache | None = None,
    timer: QueryTimer | None = None,
    pool_min_size: int = 1,
    pool_max_size: int = 8,
    statement_timeout_ms: int = 60_000,
    consistency_timeout: float = 5.0,
    connect_timeout: float = 10.0,
) -> AsyncIterator[QueryBus]:
    """A bus for ``principal`` over pools of its own: ``app_database_url`` (acci_app, within a
    tenant) and ``database_url`` (the owner, across tenants: opened with no connection unless
    ``principal`` is a system administrator, who may ask such a query); and over ``cache`` and
    ``timer``, all closed on exit.

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
                app_database_url,
                min_size=pool_min_size,
                max_size=pool_max_size,
                statement_timeout_ms=statement_timeout_ms,
                pool_class=TenantScopedPool,
            )
        )
        # A system administrator's bus may answer across tenants: its pool is checked as the
        # tenant one is (another URL, another role: each fails for its own reason).
        across = principal.is_system_admin
        admin_pool = await stack.enter_async_context(
            create_pool(
                database_url,
                min_size=1 if across else 0,
                max_size=pool_max_size,
                statement_timeout_ms=statement_timeout_ms,
            )
        )
        await _connected(pool, app_database_url, connect_timeout)
        if across:
            await _connected(admin_pool, database_url, connect_timeout)
        yield build_query_bus(
            pool,
            admin_pool=admin_pool,
            cache=cache,
            consistency_timeout=consistency_timeout,
            timer=timer,
            principal=principal,
        )


async def _connected(pool: AsyncConnectionPool, url: str, within: float) -> None:
    """Fail now, not after the pool's own 30 s wait inside the first query; at once, with
    PostgreSQL's own reason, if the server answers and refuses (no such database or role, a
    wrong password)."""
    where = conninfo_to_dict(url)
    server = f"PostgreSQL at {where.get('host', 'localhost')}:{where.get('port', 5432)}"
    user = where.get("user", "the default user")
    waiting = asyncio.ensure_future(pool.wait(timeout=within))
    # Asked only when the pool is not up at once, so a healthy start opens no extra connection.
    done, _ = await asyncio.wait({waiting}, timeout=_PROBE_AFTER)
    if not done and (reason := await refusal(url, connect_timeout=within)) is not None:
        waiting.cancel()  # it answered: waiting will not change that
        hint = " (`acci db migrate` creates it)" if "does not exist" in reason else ""
        raise ReadModelError(f"{server} refused {user}: {reason}{hint}")
    try:
        await waiting
    except psycopg_pool.PoolTimeout:
        raise ReadModelError(
            f"{server} did not accept a connection (as {user}) within {within:.1f} s"
        ) from None
