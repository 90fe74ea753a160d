"""One partition per tenant for events and snapshots, attached on first use."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from eventstore import validation
from eventstore.errors import translate

log = logging.getLogger(__name__)

_PARTITION_LOCK_KEY = 0x41434349_50415254  # "ACCIPART"
_NOT_NAME = re.compile(r"[^a-z0-9_]")

_TABLES = (
    # (schema, parent, default partition)
    ("event_store", "events", "events_default"),
    ("snapshots", "aggregate_snapshots", "aggregate_snapshots_default"),
)

# Statement triggers are not inherited, and appends insert straight into the tenant's partition:
# each events partition needs its own (migration 005 explains the writer lock it takes).
_REGISTER_WRITER = (
    "CREATE TRIGGER events_register_writer BEFORE INSERT ON {}"
    " FOR EACH STATEMENT EXECUTE FUNCTION event_store.register_event_writer()"
)


def partition_name(parent: str, tenant_id: str) -> str:
    """A readable, collision-free table name for a tenant's partition (< 63 bytes)."""
    readable = _NOT_NAME.sub("_", tenant_id.lower())[:24]
    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:10]
    return f"{parent}_{readable}_{digest}"


class TenantPartitions:
    """Creates each tenant's partitions once, and remembers which exist."""

    def __init__(self, pool: AsyncConnectionPool, *, lock_timeout_ms: int = 10_000) -> None:
        self._pool = pool
        self._lock_timeout_ms = lock_timeout_ms
        self._known: dict[str, str] = {}

    async def ensure(self, tenant_id: str) -> str:
        """Make sure the tenant has its partitions; returns its events partition's name."""
        name = self._known.get(tenant_id)
        if name is None:
            validation.tenant_id(tenant_id)
            try:
                name = await self._ensure(tenant_id)
            except psycopg.Error as e:
                raise translate(e) from e
            self._known[tenant_id] = name
        return name

    async def list(self) -> list[str]:
        """Every tenant that has partitions."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT tenant_id FROM event_store.tenants ORDER BY 1")
            return [row[0] for row in await cur.fetchall()]

    async def _ensure(self, tenant_id: str) -> str:
        async with self._pool.connection() as conn:
            existing = await self._events_partition(conn, tenant_id)
            if existing:
                return existing
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK_KEY,))
                existing = await self._events_partition(conn, tenant_id)
                if existing:
                    return existing
                # ATTACH takes only SHARE UPDATE EXCLUSIVE on the parent, so appends and reads
                # of other tenants go on meanwhile (CREATE TABLE ... PARTITION OF would lock
                # them all out). A bounded wait turns a blocked attach into a retryable error.
                await conn.execute(
                    sql.SQL("SET LOCAL lock_timeout = {}").format(
                        sql.Literal(f"{self._lock_timeout_ms}ms")
                    )
                )
                names = []
                for schema, parent, default in _TABLES:
                    name = partition_name(parent, tenant_id)
                    names.append(name)
                    await self._attach(conn, schema, parent, default, name, tenant_id)
                await conn.execute(
                    "INSERT INTO event_store.tenants"
                    " (tenant_id, events_partition, snapshots_partition) VALUES (%s, %s, %s)",
                    (tenant_id, *names),
                )
        log.info("created tenant partitions", extra={"tenant_id": tenant_id, "tables": names})
        return names[0]

    @staticmethod
    async def _events_partition(conn: psycopg.AsyncConnection[Any], tenant_id: str) -> str | None:
        cur = await conn.execute(
            "SELECT events_partition FROM event_store.tenants WHERE tenant_id = %s", (tenant_id,)
        )
        row = await cur.fetchone()
        return str(row[0]) if row else None

    @staticmethod
    async def _attach(
        conn: psycopg.AsyncConnection[object],
        schema: str,
        parent: str,
        default: str,
        name: str,
        tenant_id: str,
    ) -> None:
        table = sql.Identifier(schema, name)
        await conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
                table, sql.Identifier(schema, parent)
            )
        )
        # Rows that reached the default partition before this tenant had its own (none, as
        # long as every write goes through ensure()) move with their positions intact;
        # otherwise ATTACH would fail on them.
        await conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM {default} WHERE tenant_id = %s RETURNING *)"
                " INSERT INTO {table} SELECT * FROM moved"
            ).format(default=sql.Identifier(schema, default), table=table),
            (tenant_id,),
        )
        if parent == "events":  # after the move above, which keeps its rows' transaction ids
            await conn.execute(sql.SQL(_REGISTER_WRITER).format(table))
        await conn.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
                sql.Identifier(schema, parent), table, sql.Literal(tenant_id)
            )
        )
