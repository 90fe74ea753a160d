"""Row-level security on read models: a tenant-scoped query sees only its tenant's rows.

Every read-model table with a ``tenant_id`` column gets the event store's policy (migration 012:
a row is visible only in a transaction whose ``acci.tenant_id`` names its tenant) and is
readable by ``acci_app``; the stable names queries read are views with ``security_invoker``,
so the policy of the table behind them applies to the querying role, not to the views' owner.
Projections write the tables as their owner, which the policies do not restrict.

A table without ``tenant_id`` (a read model of no tenant's data) is not granted to acci_app:
only cross-tenant work, as the owner, reads it.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg import AsyncConnection, sql

from acci.readmodels.changes.change import SCHEMA
from acci.readmodels.read_model import ReadModel
from acci.readmodels.versioned import physical_table

APP_ROLE: Final = "acci_app"

# The tables (of those named) that have a tenant_id column, with whether their policy is in place.
_TENANT_TABLES: Final = """
SELECT c.relname, c.relrowsecurity AND EXISTS (
           SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')
   AND EXISTS (SELECT FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
"""

# The views (of those named) that check the invoker's policies, and whether acci_app reads them.
_SECURED_VIEWS: Final = """
SELECT c.relname, has_table_privilege(%s, c.oid, 'SELECT')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'v'
   AND 'security_invoker=true' = ANY(coalesce(c.reloptions, '{}'))
"""

_POLICY: Final = sql.SQL(
    "CREATE POLICY tenant_isolation ON {} USING (tenant_id = event_store.current_tenant())"
    " WITH CHECK (tenant_id = event_store.current_tenant())"
)


async def tenant_tables(
    conn: AsyncConnection[Any], model: ReadModel, version: int
) -> dict[str, bool]:
    """Version ``version``'s tables that hold tenant rows (by stable name), each with whether
    its policy is in place already."""
    names = {physical_table(t, version): t for t in model.tables}
    cur = await conn.execute(_TENANT_TABLES, (SCHEMA, list(names)))
    return {names[name]: bool(secured) for name, secured in await cur.fetchall()}


async def secure_tables(conn: AsyncConnection[Any], model: ReadModel, version: int) -> None:
    """Put the tenant policy on version ``version``'s tenant tables and let acci_app read them
    (idempotent: a table already secured is left alone, so no lock is taken at every start)."""
    for table, secured in (await tenant_tables(conn, model, version)).items():
        if secured:
            continue
        name = sql.Identifier(SCHEMA, physical_table(table, version))
        await conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(name))
        await conn.execute(sql.SQL("DROP POLICY IF EXISTS tenant_isolation ON {}").format(name))
        await conn.execute(_POLICY.format(name))
        await conn.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(name, sql.Identifier(APP_ROLE))
        )


async def secure_views(conn: AsyncConnection[Any], model: ReadModel, version: int) -> None:
    """Make each stable name's view check the querying role's policies, and let acci_app read
    the views of tenant tables (views already so are left alone)."""
    tenant = await tenant_tables(conn, model, version)
    cur = await conn.execute(_SECURED_VIEWS, (APP_ROLE, SCHEMA, list(model.tables)))
    done = {name for name, granted in await cur.fetchall() if granted or name not in tenant}
    for table in model.tables:
        if table in done:
            continue
        view = sql.Identifier(SCHEMA, table)
        await conn.execute(sql.SQL("ALTER VIEW {} SET (security_invoker = true)").format(view))
        if table in tenant:
            await conn.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(view, sql.Identifier(APP_ROLE))
            )
