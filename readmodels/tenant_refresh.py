"""One tenant's rows of every read model, made again from its events (a tenant restore).

In the caller's transaction (the restore's, which replaced the tenant's events): for each
projection, its live checkpoint is locked (its next batch waits), the tenant's rows are deleted
from the tables of the version it writes, and the tenant's events up to that checkpoint are
applied again; the events after it are the live projection's to apply, as ever. So every event
is applied once, and the other tenants' rows are not touched. A read model whose tables have no
``tenant_id`` column cannot be refreshed per tenant (it is named: rebuild it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from psycopg import AsyncConnection, sql

from acci.eventstore.records import START
from acci.eventstore.store import EventStore
from acci.readmodels.changes import apply_changes
from acci.readmodels.changes.change import SCHEMA
from acci.readmodels.checkpoints import CheckpointStore
from acci.readmodels.db import applying_changes, translated
from acci.readmodels.errors import ReadModelError
from acci.readmodels.projections import Projection
from acci.readmodels.versioned import allowed, versioned_tables

_PAGE: Final = 5_000
_HAS_TENANT: Final = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = ANY(%s) AND NOT EXISTS (SELECT FROM pg_attribute a"
    " WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)"
)


async def refresh_tenant(
    conn: AsyncConnection[Any],
    store: EventStore,
    tenant: str,
    projections: Sequence[Projection],
) -> dict[str, int]:
    """Each projection's rows of ``tenant`` made again; returns the events applied by each."""
    applied: dict[str, int] = {}
    for projection in projections:
        with translated():
            checkpoint = await CheckpointStore.lock(conn, projection.name)
            tables = versioned_tables(projection, checkpoint.version)
            cur = await conn.execute(_HAS_TENANT, (SCHEMA, sorted(tables.values())))
            if missing := [name for (name,) in await cur.fetchall()]:
                raise ReadModelError(
                    f"read model {projection.name!r} has tables without tenant_id ({missing}):"
                    f" rebuild it (acci readmodels rebuild {projection.name})"
                )
            for physical in sorted(tables.values()):
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(
                        sql.Identifier(SCHEMA, physical)
                    ),
                    (tenant,),
                )
            await conn.execute(
                "DELETE FROM read_models.dead_letters WHERE projection = %s AND tenant_id = %s",
                (projection.name, tenant),
            )
        applied[projection.name] = await _apply(
            conn, store, tenant, projection, checkpoint.position, tables
        )
    return applied


async def _apply(
    conn: AsyncConnection[Any],
    store: EventStore,
    tenant: str,
    projection: Projection,
    until: Any,
    tables: Any,
) -> int:
    after, count = START, 0
    while True:
        events = await store.read_tenant_in(conn, tenant, after=after, until=until, limit=_PAGE)
        if not events:
            return count
        # A shredded tenant's events are unreadable: refreshing after `acci tenant shred`
        # leaves only what its clear events (if any) make.
        changes = [
            c for e in events if e.readable for c in allowed(projection.handle_event(e), tables)
        ]
        with applying_changes():
            await apply_changes(conn, changes, tables)
        count += len(events)
        after = events[-1].position
