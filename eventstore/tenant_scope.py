"""A transaction that works for one tenant: row-level security sees only that tenant's rows.

Tenant-scoped work connects as ``acci_app`` (migration 012), whose policies show a row only
when the transaction's ``acci.tenant_id`` names its tenant. ``scoped`` sets it with
``set_config(..., true)``, so it ends with the transaction and a pooled connection carries
nothing over to its next user. On an autocommit connection the setting and the statements
after it run in one pipeline: one implicit transaction, sent in the same round trip as the
first statement. As the tables' owner (cross-tenant work), the policies do not apply and the
setting costs only its bind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from acci.eventstore import validation

SET_TENANT: Final = "SELECT set_config('acci.tenant_id', %s, true)"


async def set_tenant(conn: AsyncConnection[Any], tenant_id: str) -> None:
    """Scope the caller's open transaction on ``conn`` to ``tenant_id``."""
    await conn.execute(SET_TENANT, (validation.tenant_id(tenant_id),))


@asynccontextmanager
async def scoped(pool: AsyncConnectionPool, tenant_id: str) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection whose statements, until the block ends, run in one transaction
    scoped to ``tenant_id`` (a pipeline: an error in one skips the rest and rolls all back)."""
    async with pool.connection() as conn:
        async with conn.pipeline():
            await set_tenant(conn, tenant_id)
            yield conn
