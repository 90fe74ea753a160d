"""Every read model's row type states exactly the table its DDL creates.

For each SQLModel row type (``readmodels/tables.py``): the same columns, each of the same SQL
type and nullability, and the same primary key, as PostgreSQL's catalog shows for the table the
migrations created. A column added to one and not the other fails here, not in production.
"""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel

from acci.readmodels.tables import TenantActivity, TenantReadModel, UserReadModel

ROW_TYPES = (TenantReadModel, UserReadModel, TenantActivity)

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


@pytest.mark.parametrize("row_type", ROW_TYPES, ids=lambda t: t.__name__)
async def test_a_row_type_states_its_tables_columns_types_nullability_and_key(
    pool: AsyncConnectionPool, row_type: type[SQLModel]
) -> None:
    columns, key = declared(row_type)
    name = row_type.__table__.fullname  # type: ignore[attr-defined]
    async with pool.connection() as conn:
        cur = await conn.execute(_COLUMNS, (name,))
        stored = [(n, t, bool(nullable)) for n, t, nullable in await cur.fetchall()]
        cur = await conn.execute(_PRIMARY_KEY, (name,))
        stored_key = {n for (n,) in await cur.fetchall()}
    assert stored, f"{name} does not exist"
    assert sorted(columns) == sorted(stored)
    assert key == stored_key
