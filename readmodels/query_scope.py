"""Which tenant a query is answered for, and connections that work for it.

The query bus answers a tenant-scoped query inside ``answering_for(tenant)``. A
``TenantScopedPool`` (the pool queries read through as ``acci_app``) hands out connections
whose statements, inside that block, run in one transaction scoped to the tenant (the event
store's ``in_tenant``; the handler's own transactions are savepoints of it): row-level security
then shows the handler that tenant's rows and no other's, an installed application's own
handlers included. Outside any such block a connection is not scoped, and as acci_app it sees
no tenant's rows at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.tenant_scope import in_tenant

_TENANT: ContextVar[str | None] = ContextVar("acci_query_tenant", default=None)


@contextmanager
def answering_for(tenant_id: str | None) -> Iterator[None]:
    """Connections a ``TenantScopedPool`` hands out in this block work for ``tenant_id``."""
    token = _TENANT.set(tenant_id)
    try:
        yield
    finally:
        _TENANT.reset(token)


class TenantScopedPool(AsyncConnectionPool):
    """A connection pool whose connections work for the tenant of the query being answered."""

    @asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (the pool's own signature)
    ) -> AsyncIterator[AsyncConnection[Any]]:
        async with super().connection(timeout) as conn:
            tenant = _TENANT.get()
            if tenant is None:
                yield conn
                return
            async with in_tenant(conn, tenant):
                yield conn
