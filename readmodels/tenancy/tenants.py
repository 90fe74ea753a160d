"""The ``tenants`` read model: one row per tenant (name, status, settings, active users).

Everything about it is here: the row type (its shape), the DDL of each version, the projection
and the two queries with their handlers. Queries read the stable name ``read_models.tenants``,
a view of the live version's table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Final, Literal

import sqlmodel
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field, ValidationInfo, field_validator
from sqlalchemy import Column, Integer, Text
from sqlalchemy.dialects.postgresql import JSONB

from acci.domain.tenant_events import TenantCreated, TenantRenamed, TenantSettingsUpdated
from acci.eventstore.records import RecordedEvent
from acci.readmodels.changes import Change, Update, Upsert
from acci.readmodels.errors import NotFoundError
from acci.readmodels.handlers import conjunction, fetch, view
from acci.readmodels.projections import Projection
from acci.readmodels.queries import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    Page,
    Query,
    Result,
    SortValue,
    TenantQuery,
    check_paging,
    decode_cursor,
    encode_cursor,
)
from acci.readmodels.read_model import QueryHandler, ReadModel, bigint, timestamptz

NAME: Final = "tenants"

TenantStatus = Literal["active", "suspended", "deleted"]
TenantSort = Literal["name", "created_at", "last_updated"]

# --- shape ---------------------------------------------------------------------------------------


class TenantReadModel(sqlmodel.SQLModel, table=True):
    """A tenant: name, status, settings and how many active users it has."""

    __tablename__ = "tenants"
    __table_args__ = {"schema": "read_models"}

    tenant_id: str = sqlmodel.Field(primary_key=True, sa_type=Text)
    name: str = sqlmodel.Field(sa_type=Text)
    # 'active' | 'suspended' | 'deleted'
    status: str = sqlmodel.Field(sa_type=Text)
    # Users registered and not deactivated.
    user_count: int = sqlmodel.Field(default=0, sa_type=Integer)
    settings: dict[str, Any] = sqlmodel.Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = timestamptz()
    # created_at of the last event applied to the row (a user event that changed user_count too).
    last_updated: datetime = timestamptz()
    # The tenant stream's version.
    version: int = bigint()


DDL: Final = {
    1: """
CREATE TABLE {tenants} (
    tenant_id text PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    user_count integer NOT NULL DEFAULT 0,
    settings jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    last_updated timestamptz NOT NULL,
    version bigint NOT NULL
);
""",
}

# --- projection ----------------------------------------------------------------------------------

# Events whose type says all the projection takes from them are matched by their type name, not
# decoded: decoding validates the data again, which it does not read (a stored event was
# validated when it was appended). Events whose data is used are decoded.
_TENANT_STATUS: Final = {
    "TenantSuspended": "suspended",
    "TenantReactivated": "active",
    "TenantDeleted": "deleted",
}
_SEATS: Final = frozenset({"UserSeatReserved", "UserSeatReleased"})
_USER_COUNT: Final = {"UserRegistered": 1, "UserDeactivated": -1}


class TenantsProjection(Projection):
    """``tenants``: a tenant's name, status, settings and active-user count."""

    name = NAME
    tables = frozenset({"tenants"})
    _decoded: ClassVar[frozenset[str]] = frozenset(
        {"TenantCreated", "TenantRenamed", "TenantSettingsUpdated"}
    )
    _handled: ClassVar[frozenset[str]] = frozenset({*_TENANT_STATUS, *_SEATS, *_decoded})

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        kind = event.event_type
        step = _USER_COUNT.get(kind)
        if step is None and kind not in self._handled:
            return []  # not about a tenant row: nothing to change
        key = {"tenant_id": event.tenant_id}
        if step is not None:
            # A user's events change its tenant's row, not the tenant stream's version.
            touched = {"last_updated": event.created_at}
            return [Update("tenants", key, touched, increments={"user_count": step})]
        stream = {"last_updated": event.created_at, "version": event.sequence_number}
        if (status := _TENANT_STATUS.get(kind)) is not None:
            return [Update("tenants", key, {"status": status, **stream})]
        if kind in _SEATS:
            # Seats move the tenant stream's version; the count follows the users' own events.
            return [Update("tenants", key, stream)]
        match self.decode(event):
            case TenantCreated() as e:
                values = {
                    "name": e.name,
                    "status": "active",
                    "user_count": 0,
                    "settings": e.settings.model_dump(mode="json"),
                    "created_at": event.created_at,
                    **stream,
                }
                return [Upsert("tenants", key, values)]
            case TenantRenamed() as e:
                return [Update("tenants", key, {"name": e.new_name, **stream})]
            case TenantSettingsUpdated() as e:
                settings = e.settings.model_dump(mode="json")
                return [Update("tenants", key, {"settings": settings, **stream})]
            case _:
                return []


# --- queries -------------------------------------------------------------------------------------


class TenantView(Result):
    """A tenant as the ``tenants`` read model holds it."""

    tenant_id: str
    name: str
    status: TenantStatus
    user_count: int
    settings: dict[str, Any]
    created_at: datetime
    last_updated: datetime
    version: int


class GetTenantDetails(TenantQuery[TenantView]):
    """One tenant; ``NotFoundError`` if the read model has no such tenant."""

    projections: ClassVar[tuple[str, ...]] = (NAME,)
    result_type: ClassVar[type[BaseModel]] = TenantView


class ListTenants(Query[Page[TenantView]]):
    """Tenants, optionally of one status, sorted, a page at a time (by offset or cursor)."""

    projections: ClassVar[tuple[str, ...]] = (NAME,)
    result_type: ClassVar[type[BaseModel]] = Page[TenantView]

    status: TenantStatus | None = None
    sort: TenantSort = "name"
    descending: bool = False
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    cursor: str | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor_fits(cls, cursor: str | None, info: ValidationInfo) -> str | None:
        # Fields validate in order: offset, sort and descending are in info.data unless invalid.
        check_paging(info.data.get("offset", 0), cursor)
        if cursor is not None and {"sort", "descending"} <= info.data.keys():
            decode_cursor(cursor, sort=info.data["sort"], descending=info.data["descending"])
        return cursor

    def after(self) -> tuple[SortValue, str] | None:
        """The (sort value, tenant id) the cursor points after, or None without a cursor."""
        if self.cursor is None:
            return None
        return decode_cursor(self.cursor, sort=self.sort, descending=self.descending)


# Column lists are only ever format arguments, never format strings: their braces are literal.
_COLUMNS: Final = sql.SQL(
    "tenant_id, name, status, user_count, COALESCE(settings, '{}'::jsonb) AS settings,"
    " created_at, last_updated, version"
)
_GET: Final = sql.SQL("SELECT {} FROM read_models.tenants WHERE tenant_id = %s").format(_COLUMNS)
_LIST: Final = sql.SQL(
    "SELECT {columns} FROM read_models.tenants WHERE {where}"
    " ORDER BY {sort} {direction}, tenant_id {direction} LIMIT %s OFFSET %s"
)


def tenant_details(pool: AsyncConnectionPool) -> QueryHandler:
    """``GetTenantDetails``: the tenant, or ``NotFoundError``."""

    async def answer(query: GetTenantDetails) -> TenantView:
        rows = await fetch(pool, _GET, (query.tenant_id,))
        if not rows:
            raise NotFoundError(f"tenant {query.tenant_id!r} not found")
        return view(TenantView, rows[0])

    return answer


def tenants(pool: AsyncConnectionPool) -> QueryHandler:
    """``ListTenants``: one page of tenants in the query's order."""

    async def answer(query: ListTenants) -> Page[TenantView]:
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
        statement = _LIST.format(
            columns=_COLUMNS,
            where=conjunction(conditions),
            sort=sort,
            direction=sql.SQL("DESC" if query.descending else "ASC"),
        )
        # One row more than asked for says whether there is a next page.
        rows = await fetch(pool, statement, [*params, query.limit + 1, query.offset])
        items = tuple(view(TenantView, row) for row in rows[: query.limit])
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = encode_cursor(
                query.sort, query.descending, getattr(last, query.sort), last.tenant_id
            )
        return Page[TenantView](items=items, next_cursor=next_cursor)

    return answer


READ_MODEL: Final = ReadModel(
    projection=TenantsProjection,
    rows=(TenantReadModel,),
    ddl=DDL,
    queries={GetTenantDetails: tenant_details, ListTenants: tenants},
)
