"""The queries the read side answers, and the typed results they return.

Queries are frozen pydantic models: constructing one validates it, and anything malformed is a
``QueryValidationError`` naming the field and the value. Each query type names the projections
(read models) it reads, so that a read-your-writes query knows which checkpoints to wait for, and
the type of its result, so that a cached answer can be read back from JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)

from acci.domain.errors import describe_problems, shown
from acci.domain.identifiers import AggregateId, TenantId
from acci.domain.roles import RoleName
from acci.eventstore.records import Position
from acci.readmodels.errors import QueryValidationError

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500

# The projection (read model, and checkpoint row) each query type reads.
TENANTS: Final = "tenants"
USERS: Final = "users"
TENANT_ACTIVITY: Final = "tenant_activity"

TenantStatus = Literal["active", "suspended", "deleted"]
UserStatus = Literal["active", "deactivated"]
TenantSort = Literal["name", "created_at", "last_updated"]

R = TypeVar("R", bound=BaseModel)
T = TypeVar("T", bound=BaseModel)

# Cursor values of these sort keys are timestamps (written as ISO 8601 inside the cursor).
_TIMESTAMP_SORTS: Final = frozenset({"created_at", "last_updated"})

SortValue = str | datetime


# --- results -------------------------------------------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class TenantView(_Result):
    """A tenant as the ``tenants`` read model holds it."""

    tenant_id: str
    name: str
    status: TenantStatus
    user_count: int
    settings: dict[str, Any]
    created_at: datetime
    last_updated: datetime
    version: int


class UserView(_Result):
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


class EventTypeActivity(_Result):
    """How many events of one type a tenant has had, and when the last one happened."""

    event_type: str
    event_count: int
    last_event_at: datetime


class TenantActivityView(_Result):
    """A tenant's events counted by type (sorted by type), with totals."""

    tenant_id: str
    event_types: tuple[EventTypeActivity, ...]
    total_events: int
    last_event_at: datetime


class Page(_Result, Generic[T]):
    """One page of a list; ``next_cursor`` asks for the next page, None on the last one."""

    items: tuple[T, ...]
    next_cursor: str | None = None


# --- cursors -------------------------------------------------------------------------------------


def encode_cursor(sort: str, descending: bool, value: SortValue, key: str) -> str:
    """An opaque cursor: 'the rows after (value, key) in this order'."""
    shown_value = value.isoformat() if isinstance(value, datetime) else value
    raw = json.dumps([sort, descending, shown_value, key], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, sort: str, descending: bool) -> tuple[SortValue, str]:
    """The (sort value, key) a cursor points after; ValueError if it is not one for this order."""
    not_ours = ValueError(f"cursor {shown(cursor)} is not a cursor this query returned")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, made_descending, value, key = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise not_ours from None
    if not (isinstance(value, str) and isinstance(key, str)):
        raise not_ours
    if (made_for, made_descending) != (sort, descending):
        order = f"{made_for} {'desc' if made_descending else 'asc'}"
        raise ValueError(f"cursor {shown(cursor)} pages by {order}; ask with that sort order")
    if sort not in _TIMESTAMP_SORTS:
        return value, key
    try:
        return datetime.fromisoformat(value), key
    except ValueError:
        raise not_ours from None


# --- queries -------------------------------------------------------------------------------------


class Query(BaseModel, Generic[R]):
    """A question to the read side, answered with an ``R``; optionally after a write's position."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The projections whose read models answer this query (what read-your-writes waits for).
    projections: ClassVar[tuple[str, ...]] = ()
    # The answer's type: a cached answer is read back from JSON with it.
    result_type: ClassVar[type[BaseModel]]

    # Read-your-writes: answer only once these projections have passed this position.
    consistent_with: Position | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _typed_errors(cls, data: Any, handler: ModelWrapValidatorHandler[Query[R]]) -> Query[R]:
        try:
            return handler(data)
        except pydantic.ValidationError as e:
            raise QueryValidationError(f"invalid {cls.__name__}: {describe_problems(e)}") from None

    @field_validator("consistent_with", mode="before")
    @classmethod
    def _parse_position(cls, value: Any) -> Any:
        if isinstance(value, str):
            return Position.parse(value)
        return value

    @field_validator("consistent_with")
    @classmethod
    def _non_negative(cls, value: Position | None) -> Position | None:
        if value is not None and min(value) < 0:
            raise ValueError(f"position {value} is negative")
        return value

    @property
    def tenant_scope(self) -> str | None:
        """The tenant whose data answers this query; None when it spans tenants."""
        return None


class TenantQuery(Query[R]):
    """A query about one tenant's data."""

    tenant_id: TenantId

    @property
    def tenant_scope(self) -> str | None:
        return self.tenant_id


def _check_paging(offset: int, cursor: str | None) -> None:
    if cursor is not None and offset:
        raise ValueError(f"give an offset ({offset}) or a cursor, not both")


class GetTenantDetails(TenantQuery[TenantView]):
    """One tenant; ``NotFoundError`` if the read model has no such tenant."""

    projections: ClassVar[tuple[str, ...]] = (TENANTS,)
    result_type: ClassVar[type[BaseModel]] = TenantView


class ListTenants(Query[Page[TenantView]]):
    """Tenants, optionally of one status, sorted, a page at a time (by offset or cursor)."""

    projections: ClassVar[tuple[str, ...]] = (TENANTS,)
    result_type: ClassVar[type[BaseModel]] = Page[TenantView]

    status: TenantStatus | None = None
    sort: TenantSort = "name"
    descending: bool = False
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0)
    cursor: str | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor_fits(cls, cursor: str | None, info: ValidationInfo) -> str | None:
        # Fields validate in order: offset, sort and descending are in info.data unless invalid.
        _check_paging(info.data.get("offset", 0), cursor)
        if cursor is not None and {"sort", "descending"} <= info.data.keys():
            decode_cursor(cursor, sort=info.data["sort"], descending=info.data["descending"])
        return cursor

    def after(self) -> tuple[SortValue, str] | None:
        """The (sort value, tenant id) the cursor points after, or None without a cursor."""
        if self.cursor is None:
            return None
        return decode_cursor(self.cursor, sort=self.sort, descending=self.descending)


class GetUser(TenantQuery[UserView]):
    """One user of a tenant; ``NotFoundError`` if the tenant has no such user."""

    projections: ClassVar[tuple[str, ...]] = (USERS,)
    result_type: ClassVar[type[BaseModel]] = UserView

    user_id: AggregateId


class ListTenantUsers(TenantQuery[Page[UserView]]):
    """A tenant's users, optionally of one status and with one role, sorted by email."""

    projections: ClassVar[tuple[str, ...]] = (USERS,)
    result_type: ClassVar[type[BaseModel]] = Page[UserView]

    status: UserStatus | None = None
    role: RoleName | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0)
    cursor: str | None = None

    @field_validator("cursor")
    @classmethod
    def _cursor_fits(cls, cursor: str | None, info: ValidationInfo) -> str | None:
        _check_paging(info.data.get("offset", 0), cursor)
        if cursor is not None:
            decode_cursor(cursor, sort="email", descending=False)
        return cursor

    def after(self) -> tuple[str, str] | None:
        """The (email, user id) the cursor points after, or None without a cursor."""
        if self.cursor is None:
            return None
        email, user_id = decode_cursor(self.cursor, sort="email", descending=False)
        return str(email), user_id


class GetTenantActivity(TenantQuery[TenantActivityView]):
    """A tenant's events counted by type; ``NotFoundError`` if none are recorded."""

    projections: ClassVar[tuple[str, ...]] = (TENANT_ACTIVITY,)
    result_type: ClassVar[type[BaseModel]] = TenantActivityView
