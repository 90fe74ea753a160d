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
from typing import Any, ClassVar, Final, Generic, TypeVar

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    field_validator,
    model_validator,
)

from acci.domain.errors import describe_problems, shown
from acci.domain.identifiers import TenantId
from acci.domain.json_values import json_problem
from acci.eventstore.records import Position
from acci.readmodels.errors import QueryValidationError

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
# An offset PostgreSQL takes (a bigint): larger is bad paging, refused before anything is read.
MAX_OFFSET: Final = 2**63 - 1

R = TypeVar("R", bound=BaseModel)
T = TypeVar("T", bound=BaseModel)

# Cursor values of these sort keys are timestamps (written as ISO 8601 inside the cursor).
_TIMESTAMP_SORTS: Final = frozenset({"created_at", "last_updated"})

SortValue = str | datetime


# --- results -------------------------------------------------------------------------------------


class Result(BaseModel):
    """A query's answer: frozen (a cached answer is read back into it)."""

    model_config = ConfigDict(frozen=True)


class Page(Result, Generic[T]):
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


# Deeper than any query's fields go: only their text is looked at.
_MAX_DEPTH: Final = 64


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
            query = handler(data)
        except pydantic.ValidationError as e:
            raise QueryValidationError(f"invalid {cls.__name__}: {describe_problems(e)}") from None
        # Text PostgreSQL cannot take (a NUL) or that is no Unicode (a lone surrogate): refused
        # here, naming the field, not by the driver in the middle of the handler's read.
        problem = json_problem(query.model_dump(), max_depth=_MAX_DEPTH, allow_nul=False)
        if problem:
            raise QueryValidationError(f"invalid {cls.__name__}: the query {problem}")
        return query

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


def check_paging(offset: int, cursor: str | None) -> None:
    """A page is asked for by offset or by cursor, not both."""
    if cursor is not None and offset:
        raise ValueError(f"give an offset ({offset}) or a cursor, not both")
