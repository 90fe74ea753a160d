"""Every read model's row types state exactly the tables its current version's DDL creates.

For each installed read model (the built-in ones and the example application's) and each of its
SQLModel row types: the same columns, each of the same SQL type and nullability, and the same
primary key, as PostgreSQL's catalog shows for the table the DDL creates (run here into scratch
names, then rolled back), and for the live version's table where the read model is installed.
A column added to one and not the other fails here, not in production.
"""

from __future__ import annotations

import pytest
from invoicing.read_model import READ_MODEL as OPEN_INVOICES
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel

from acci.readmodels.installed import read_models
from acci.readmodels.read_model import ReadModel
from acci.readmodels.versioned import physical_table

# The installed ones, and the example application's (not installed here: other tests in this
# process run the built-in application alone).
MODELS = {m.name: m for m in (*read_models(), OPEN_INVOICES)}
ROWS = [(m, row) for m in MODELS.values() for row in m.rows]

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
  FROM pg_attribute a
 WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""
_PRIMARY_KEY = """
SELECT a.attname
  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
 WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
"""


def declared(row_type: type[SQLModel]) -> tuple[list[tuple[str, str, bool]], set[str]]:
    table = row_type.__table__  # type: ignore[attr-defined]
    columns = [
        (c.name, c.type.compile(dialect=postgresql.dialect()).lower(), bool(c.nullable))
        for c in table.columns
    ]
    return columns, {c.name for c in table.primary_key.columns}


async def stored(conn: AsyncConnection, name: str) -> tuple[list[tuple[str, str, bool]], set[str]]:
    cur = await conn.execute(_COLUMNS, (name,))
    columns = [(n, t, bool(nullable)) for n, t, nullable in await cur.fetchall()]
    cur = await conn.execute(_PRIMARY_KEY, (name,))
    return columns, {n for (n,) in await cur.fetchall()}


def test_the_example_applications_read_model_is_among_those_checked() -> None:
    assert {"tenants", "users", "tenant_activity", "open_invoices"} <= MODELS.keys()


@pytest.mark.parametrize(
    ("model", "row_type"), ROWS, ids=[f"{m.name}.{r.__name__}" for m, r in ROWS]
)
async def test_a_row_type_states_its_tables_columns_types_nullability_and_key(
    pool: AsyncConnectionPool, model: ReadModel, row_type: type[SQLModel]
) -> None:
    columns, key = declared(row_type)
    table = row_type.__tablename__
    async with pool.connection() as conn:
        # The table the current version's DDL creates, made under scratch names and dropped.
        async with conn.transaction(force_rollback=True):
            await conn.execute(model.create_statement(model.version, suffix="_shape"))
            made = await stored(conn, f"read_models.{physical_table(table, model.version)}_shape")
        live = await stored(conn, f"read_models.{physical_table(table, model.version)}")
    assert made[0], f"the DDL of {model.name} v{model.version} does not create {table}"
    assert sorted(columns) == sorted(made[0])
    assert key == made[1]
    if model is not OPEN_INVOICES:
        assert made == live  # the live version (created at start) is that version's
