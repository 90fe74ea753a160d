"""One handler per query: parameterised SQL over the read-model tables, typed results out.

Database errors become ``ReadModelError`` at the read side's boundary (``readmodels/db.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeVar

import pydantic
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from acci.domain.errors import describe_problems
from acci.readmodels.db import translated
from acci.readmodels.errors import NotFoundError, ReadModelError
from acci.readmodels.queries import (
    EventTypeActivity,
    GetTenantActivity,
    GetTenantDetails,
    GetUser,
    ListTenants,
    ListTenantUsers,
    Page,
    TenantActivityView,
    TenantView,
    UserView,
    encode_cursor,
)

V = TypeVar("V", bound=pydantic.BaseModel)

# Column lists are only ever format arguments, never format strings: their braces are literal.
_TENANT_COLUMNS: Final = sql.SQL(
    "tenant_id, name, status, user_count, COALESCE(settings, '{}'::jsonb) AS settings,"
    " created_at, last_updated, version"
)
_USER_COLUMNS: Final = sql.SQL(
    "tenant_id, user_id, email, display_name, COALESCE(roles, '{}'::text[]) AS roles, status,"
    " created_at, last_updated, version"
)

_GET_TENANT: Final = sql.SQL("SELECT {} FROM read_models.tenants WHERE tenant_id = %s").format(
    _TENANT_COLUMNS
)
_LIST_TENANTS: Final = sql.SQL(
    "SELECT {columns} FROM read_models.tenants WHERE {where}"
    " ORDER BY {sort} {direction}, tenant_id {direction} LIMIT %s OFFSET %s"
)
_GET_USER: Final = sql.SQL(
    "SELECT {} FROM read_models.users WHERE tenant_id = %s AND user_id = %s"
).format(_USER_COLUMNS)
_LIST_USERS: Final = sql.SQL(
    "SELECT {columns} FROM read_models.users WHERE {where}"
    " ORDER BY email, user_id LIMIT %s OFFSET %s"
)
_GET_ACTIVITY: Final = sql.SQL(
    "SELECT event_type, event_count, last_event_at FROM read_models.tenant_activity"
    " WHERE tenant_id = %s ORDER BY event_type"
)


async def fetch(
    pool: AsyncConnectionPool, statement: sql.SQL | sql.Composed, params: Sequence[Any]
) -> list[dict[str, Any]]:
    """Every row a read-only statement returns, as dicts; database errors as ``ReadModelError``."""
    with translated():
        async with pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(statement, params)
            return await cur.fetchall()


def _view(model: type[V], row: dict[str, Any]) -> V:
    try:
        return model.model_validate(row)
    except pydantic.ValidationError as e:
        # A row the projection wrote that our result type cannot hold: the read model is off.
        raise ReadModelError(
            f"a read-model row does not fit {model.__name__}: {describe_problems(e)}"
        ) from e


def _conjunction(conditions: list[sql.Composable]) -> sql.Composable:
    return sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")


class ReadModelQueries:
    """The handlers of every read-model query, reading through one connection pool."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def tenant_details(self, query: GetTenantDetails) -> TenantView:
        """The tenant, or ``NotFoundError``."""
        rows = await fetch(self._pool, _GET_TENANT, (query.tenant_id,))
        if not rows:
            raise NotFoundError(f"tenant {query.tenant_id!r} not found")
        return _view(TenantView, rows[0])

    async def tenants(self, query: ListTenants) -> Page[TenantView]:
        """One page of tenants in the query's order."""
        sort = sql.Identifier(query.sort)
        conditions: list[sql.Composable] = []
        params: list[Any] = []
        if query.status is not None:
            conditions.append(sql.SQL("status = %s"))
            params.append(query.status)
        if (after := query.after()) is not None:
            # Keyset paging: the tenant id breaks ties, so no row is skipped or repeated.
            beyond = sql.SQL("<" if query.descending else ">")
            conditions.append(sql.SQL("({}, tenant_id) {} (%s, %s)").format(sort, beyond))
            params.extend(after)
        statement = _LIST_TENANTS.format(
            columns=_TENANT_COLUMNS,
            where=_conjunction(conditions),
            sort=sort,
            direction=sql.SQL("DESC" if query.descending else "ASC"),
        )
        # One row more than asked for says whether there is a next page.
        rows = await fetch(self._pool, statement, [*params, query.limit + 1, query.offset])
        items = tuple(_view(TenantView, row) for row in rows[: query.limit])
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = encode_cursor(
                query.sort, query.descending, getattr(last, query.sort), last.tenant_id
            )
        return Page[TenantView](items=items, next_cursor=next_cursor)

    async def user(self, query: GetUser) -> UserView:
        """The user, or ``NotFoundError`` naming the user and the tenant."""
        rows = await fetch(self._pool, _GET_USER, (query.tenant_id, query.user_id))
        if not rows:
            raise NotFoundError(f"user {query.user_id!r} not found in tenant {query.tenant_id!r}")
        return _view(UserView, rows[0])

    async def tenant_users(self, query: ListTenantUsers) -> Page[UserView]:
        """One page of the tenant's users, by email."""
        conditions: list[sql.Composable] = [sql.SQL("tenant_id = %s")]
        params: list[Any] = [query.tenant_id]
        if query.status is not None:
            conditions.append(sql.SQL("status = %s"))
            params.append(query.status)
        if query.role is not None:
            conditions.append(sql.SQL("%s = ANY(roles)"))
            params.append(query.role)
        if (after := query.after()) is not None:
            conditions.append(sql.SQL("(email, user_id) > (%s, %s)"))
            params.extend(after)
        statement = _LIST_USERS.format(columns=_USER_COLUMNS, where=_conjunction(conditions))
        rows = await fetch(self._pool, statement, [*params, query.limit + 1, query.offset])
        items = tuple(_view(UserView, row) for row in rows[: query.limit])
        next_cursor = None
        if len(rows) > query.limit:
            next_cursor = encode_cursor("email", False, items[-1].email, items[-1].user_id)
        return Page[UserView](items=items, next_cursor=next_cursor)

    async def tenant_activity(self, query: GetTenantActivity) -> TenantActivityView:
        """The tenant's event counts by type, or ``NotFoundError`` if none are recorded."""
        rows = await fetch(self._pool, _GET_ACTIVITY, (query.tenant_id,))
        if not rows:
            raise NotFoundError(f"no activity recorded for tenant {query.tenant_id!r}")
        by_type = tuple(_view(EventTypeActivity, row) for row in rows)
        return TenantActivityView(
            tenant_id=query.tenant_id,
            event_types=by_type,
            total_events=sum(a.event_count for a in by_type),
            last_event_at=max(a.last_event_at for a in by_type),
        )
