"""The ``users`` read model: one row per user of a tenant (email, name, sorted roles, status).

Everything about it is here: the row type (its shape), the DDL of each version, the projection
and the two queries with their handlers. Queries read the stable name ``read_models.users``, a
view of the live version's table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Final, Literal

import sqlmodel
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field, ValidationInfo, field_validator
from sqlalchemy import Column, Text
from sqlalchemy.dialects.postgresql import ARRAY

from acci.domain.identifiers import AggregateId
from acci.domain.roles import RoleName
from acci.domain.user_events import RoleAssigned, RoleRevoked, UserEmailChanged, UserRegistered
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
    Result,
    TenantQuery,
    check_paging,
    decode_cursor,
    encode_cursor,
)
from acci.readmodels.read_model import QueryHandler, ReadModel, bigint, timestamptz

NAME: Final = "users"

UserStatus = Literal["active", "deactivated"]

# --- shape ---------------------------------------------------------------------------------------


class UserReadModel(sqlmodel.SQLModel, table=True):
    """A user of a tenant: email, display name, sorted roles and status."""

    __tablename__ = "users"
    __table_args__ = {"schema": "read_models"}

    tenant_id: str = sqlmodel.Field(primary_key=True, sa_type=Text)
    user_id: str = sqlmodel.Field(primary_key=True, sa_type=Text)
    email: str = sqlmodel.Field(sa_type=Text)
    display_name: str = sqlmodel.Field(sa_type=Text)
    # Sorted by code point, no duplicates.
    roles: list[str] = sqlmodel.Field(sa_column=Column(ARRAY(Text), nullable=False))
    # 'active' | 'deactivated'
    status: str = sqlmodel.Field(sa_type=Text)
    created_at: datetime = timestamptz()
    last_updated: datetime = timestamptz()
    # The user stream's version.
    version: int = bigint()


DDL: Final = {
    1: """
CREATE TABLE {users} (
    tenant_id text NOT NULL,
    user_id text NOT NULL,
    email text NOT NULL,
    display_name text NOT NULL,
    roles text[] NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'deactivated')),
    created_at timestamptz NOT NULL,
    last_updated timestamptz NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX ON {users} (tenant_id, email);
""",
}

# --- projection ----------------------------------------------------------------------------------


class UsersProjection(Projection):
    """``users``: a user's email, display name, roles and status."""

    name = NAME
    tables = frozenset({"users"})

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        if event.aggregate_type != "User":
            return []  # only user streams have user rows
        key = {"tenant_id": event.tenant_id, "user_id": event.aggregate_id}
        stream = {"last_updated": event.created_at, "version": event.sequence_number}
        if event.event_type == "UserDeactivated":
            return [Update("users", key, {"status": "deactivated", **stream})]
        match self.decode(event):
            case UserRegistered() as e:
                values = {
                    "email": e.email,
                    "display_name": e.display_name,
                    "roles": sorted(set(e.roles)),
                    "status": "active",
                    "created_at": event.created_at,
                    **stream,
                }
                return [Upsert("users", key, values)]
            case UserEmailChanged() as e:
                return [Update("users", key, {"email": e.new_email, **stream})]
            case RoleAssigned() as e:
                return [Update("users", key, stream, add_to_set={"roles": e.role})]
            case RoleRevoked() as e:
                return [Update("users", key, stream, remove_from_set={"roles": e.role})]
            case _:
                return []


# --- queries -------------------------------------------------------------------------------------


class UserView(Result):
    """A user as the ``users`` read model holds it; roles are sorted."""

    tenant_id: str
    user_id: str
    email: str
    display_name: str
    roles: tuple[str, ...]
    status: UserStatus
    created_at: datetime
    last_updated: datetime
    version: int


class GetUser(TenantQuery[UserView]):
    """One user of a tenant; ``NotFoundError`` if the tenant has no such user."""

    projections: ClassVar[tuple[str, ...]] = (NAME,)
    result_type: ClassVar[type[BaseModel]] = UserView

    user_id: AggregateId


class ListTenantUsers(TenantQuery[Page[UserView]]):
    """A tenant's users, optionally of one status and with one role, sorted by email."""

    projections: ClassVar[tuple[str, ...]] = (NAME,)
    result_type: ClassVar[type[BaseModel]] = Page[UserView]

    status: UserStatus | None = None
    role: RoleName | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    cursor: str | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor_fits(cls, cursor: str | None, info: ValidationInfo) -> str | None:
        check_paging(info.data.get("offset", 0), cursor)
        if cursor is not None:
            decode_cursor(cursor, sort="email", descending=False)
        return cursor

    def after(self) -> tuple[str, str] | None:
        """The (email, user id) the cursor points after, or None without a cursor."""
        if self.cursor is None:
            return None
        email, user_id = decode_cursor(self.cursor, sort="email", descending=False)
        return str(email), user_id


# Column lists are only ever format arguments, never format strings: their braces are literal.
_COLUMNS: Final = sql.SQL(
    "tenant_id, user_id, email, display_name, COALESCE(roles, '{}'::text[]) AS roles, status,"
    " created_at, last_updated, version"
)
_GET: Final = sql.SQL(
    "SELECT {} FROM read_models.users WHERE tenant_id = %s AND user_id = %s"
).format(_COLUMNS)
_LIST: Final = sql.SQL(
    "SELECT {columns} FROM read_models.users WHERE {where}"
    " ORDER BY email, user_id LIMIT %s OFFSET %s"
)


def user(pool: AsyncConnectionPool) -> QueryHandler:
    """``GetUser``: the user, or ``NotFoundError`` naming the user and the tenant."""

    async def answer(query: GetUser) -> UserView:
        rows = await fetch(pool, _GET, (query.tenant_id, query.user_id))
        if not rows:
            raise NotFoundError(f"user {query.user_id!r} not found in tenant {query.tenant_id!r}")
        return view(UserView, rows[0])

    return answer


def tenant_users(pool: AsyncConnectionPool) -> QueryHandler:
    """``ListTenantUsers``: one page of the tenant's users, by email."""

    async def answer(query: ListTenantUsers) -> Page[UserView]:
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
        statement = _LIST.format(columns=_COLUMNS, where=conjunction(conditions))
        rows = await fetch(pool, statement, [*params, query.limit + 1, query.offset])
        items = tuple(view(UserView, row) for row in rows[: query.limit])
        next_cursor = None
        if len(rows) > query.limit:
            next_cursor = encode_cursor("email", False, items[-1].email, items[-1].user_id)
        return Page[UserView](items=items, next_cursor=next_cursor)

    return answer


READ_MODEL: Final = ReadModel(
    projection=UsersProjection,
    rows=(UserReadModel,),
    ddl=DDL,
    queries={GetUser: user, ListTenantUsers: tenant_users},
)
