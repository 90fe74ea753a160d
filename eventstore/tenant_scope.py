"""A transaction that works for one tenant: row-level security sees only that tenant's rows.

Tenant-scoped work connects as ``acci_app`` (migration 012), whose policies show a row only
when the transaction's ``acci.tenant_id`` names its tenant. ``scoped`` sets it with
``set_config(..., true)``, so it ends with the transaction and a pooled connection carries
nothing over to its next user. On an autocommit connection the setting and the statements
after it run in one pipeline: one implicit transaction, sent in the same round trip as the
first statement. That transaction ends at the pipeline's next sync, which psycopg sends
before a ``conn.transaction()`` or a nested ``conn.pipeline()``: ``scoped`` is for plain
statements. Code that opens transactions of its own (query handlers) runs in ``in_tenant``, a
real transaction, in which theirs become savepoints that keep the setting. The append and load
statements set the tenant themselves (eventstore/append.py, loading.py). As the tables' owner
(cross-tenant work), the policies do not apply and the setting costs only its bind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from acci.eventstore import validation

SET_TENANT: Final = "SELECT set_config('acci.tenant_id', %s, true)"
# A tenant the store knows: it has events, or a data key (a shredded tenant keeps its marked
# rows). Asked as the tables' owner, across tenants.
_KNOWN: Final = (
    "SELECT EXISTS (SELECT FROM event_store.tenant_keys WHERE tenant_id = %(t)s)"
    " OR EXISTS (SELECT FROM event_store.events WHERE tenant_id = %(t)s)"
)


async def set_tenant(conn: AsyncConnection[Any], tenant_id: str) -> None:
    """Scope the caller's open transaction on ``conn`` to ``tenant_id``."""
    await conn.execute(SET_TENANT, (validation.tenant_id(tenant_id),))


async def tenant_known(conn: AsyncConnection[Any], tenant_id: str) -> bool:
    """Whether the store has anything of ``tenant_id`` (events or a data key): an act on a
    tenant it does not know (a mistyped name) is refused rather than done on nothing."""
    row = await (await conn.execute(_KNOWN, {"t": tenant_id})).fetchone()
    return bool(row and row[0])


@asynccontextmanager
async def scoped(pool: AsyncConnectionPool, tenant_id: str) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection whose statements, until the block ends, run in one transaction
    scoped to ``tenant_id`` (a pipeline: an error in one skips the rest and rolls all back).
    Plain statements only: no ``conn.transaction()`` or ``conn.pipeline()`` inside."""
    async with pool.connection() as conn:
        async with conn.pipeline():
            await set_tenant(conn, tenant_id)
            yield conn


@asynccontextmanager
async def in_tenant(conn: AsyncConnection[Any], tenant_id: str) -> AsyncIterator[None]:
    """A transaction on ``conn`` scoped to ``tenant_id``, whatever the block runs in it (its
    own transactions are savepoints of this one, and keep the setting)."""
    async with conn.transaction():
        await set_tenant(conn, tenant_id)
        yield
