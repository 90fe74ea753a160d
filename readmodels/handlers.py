"""What query handlers share: parameterised SQL over the read models' stable names, typed
results out (each read model's own handlers are in its module, e.g. ``tenancy/tenants.py``).

Database errors become ``ReadModelError`` at the read side's boundary (``readmodels/db.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import pydantic
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from acci.domain.errors import describe_problems
from acci.readmodels.db import translated
from acci.readmodels.errors import ReadModelError

V = TypeVar("V", bound=pydantic.BaseModel)


async def fetch(
    pool: AsyncConnectionPool, statement: sql.SQL | sql.Composed, params: Sequence[Any]
) -> list[dict[str, Any]]:
    """Every row a read-only statement returns, as dicts; database errors as ``ReadModelError``."""
    with translated():
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(statement, params)
            return await cur.fetchall()


def view(model: type[V], row: dict[str, Any]) -> V:
    """``row`` as a ``model``; a row that does not fit is ``ReadModelError``."""
    try:
        return model.model_validate(row)
    except pydantic.ValidationError as e:
        # A row the projection wrote that our result type cannot hold: the read model is off.
        raise ReadModelError(
            f"a read-model row does not fit {model.__name__}: {describe_problems(e)}"
        ) from e


def conjunction(conditions: list[sql.Composable]) -> sql.Composable:
    """The conditions joined by AND (TRUE for none)."""
    return sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")
