"""Checks on everything an append or read is handed, before anything touches the database."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from domain.identifiers import AGGREGATE_ID_PATTERN, TENANT_ID_PATTERN, TYPE_NAME_PATTERN
from eventstore.errors import (
    EventStoreValidationError,
    InvalidIdentifierError,
    PayloadTooLargeError,
)

# Larger than any stream will ever be: "no upper bound" in version ranges.
MAX_VERSION: Final = 2**62

_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_AGGREGATE_ID = re.compile(AGGREGATE_ID_PATTERN)
_TYPE_NAME = re.compile(TYPE_NAME_PATTERN)


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidIdentifierError(f"invalid {what} {value!r}: must match {pattern.pattern}")
    return value


def tenant_id(value: object) -> str:
    """A valid tenant id, or InvalidIdentifierError."""
    return _check(_TENANT_ID, value, "tenant id")


def aggregate_id(value: object) -> str:
    """A valid aggregate id, or InvalidIdentifierError."""
    return _check(_AGGREGATE_ID, value, "aggregate id")


def stream(tenant: object, aggregate: object, *, until: datetime | None = None) -> None:
    """A valid stream reference (and, if given, a time-zone-aware time), or a validation error."""
    tenant_id(tenant)
    aggregate_id(aggregate)
    if until is not None and until.tzinfo is None:
        raise EventStoreValidationError(f"timestamp {until.isoformat()} has no time zone")


def type_name(value: object, what: str = "type name") -> str:
    """A valid aggregate or event type name, or InvalidIdentifierError."""
    return _check(_TYPE_NAME, value, what)


def type_names(values: Iterable[object], what: str = "event type") -> list[str]:
    """Each value checked as a type name."""
    return [type_name(v, what) for v in values]


def encode_json(value: Mapping[str, Any], *, limit: int, what: str) -> str:
    """``value`` as compact JSON text, refused when it is larger than ``limit`` bytes."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidIdentifierError(f"{what} is not JSON-serialisable: {e}") from e
    # PostgreSQL's text and jsonb cannot hold NUL; refuse it here with a clear message.
    if "\\u0000" in text or "\x00" in text:
        raise InvalidIdentifierError(f"{what} contains a NUL character, which cannot be stored")
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes; the limit is {limit} bytes")
    return text
