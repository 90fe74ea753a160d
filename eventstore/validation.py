"""Checks on everything an append or read is handed, before anything touches the database."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from acci.domain.identifiers import AGGREGATE_ID_PATTERN, TENANT_ID_PATTERN, TYPE_NAME_PATTERN
from acci.domain.json_values import json_problem
from acci.eventstore.errors import (
    EventStoreValidationError,
    InvalidIdentifierError,
    PayloadTooLargeError,
)

# Larger than any stream will ever be: "no upper bound" in version ranges, and the largest
# version (stream, expected or snapshot) the store accepts; a bigint holds it.
MAX_VERSION: Final = 2**62
# How deeply stored JSON (event data and metadata, snapshot state) may nest, the outer object
# being level 1. Commands allow 32 (activities.models.MAX_PAYLOAD_DEPTH); the store leaves room
# for the envelopes around them, far below what would make encoding or decoding recurse too deep.
MAX_JSON_DEPTH: Final = 64
# Snapshot schema versions are an integer column.
MAX_SCHEMA_VERSION: Final = 2**31 - 1

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


def version(value: object, what: str, *, minimum: int = 0, maximum: int = MAX_VERSION) -> int:
    """``value`` if it is an int (not a bool) from ``minimum`` to ``maximum``, else a validation
    error: a huge or mistyped version would otherwise reach the database as a plain failure."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise EventStoreValidationError(
            f"{what} {value!r} is not a whole number from {minimum} to {maximum}"
        )
    return value


def type_name(value: object, what: str = "type name") -> str:
    """A valid aggregate or event type name, or InvalidIdentifierError."""
    return _check(_TYPE_NAME, value, what)


def type_names(values: Iterable[object], what: str = "event type") -> list[str]:
    """Each value checked as a type name."""
    return [type_name(v, what) for v in values]


def encode_json(value: Mapping[str, Any], *, limit: int, what: str) -> str:
    """``value`` as compact JSON text, refused (EventStoreValidationError) when it nests deeper
    than MAX_JSON_DEPTH, holds text that is not valid Unicode or a NUL, is not JSON, or is larger
    than ``limit`` bytes."""
    # PostgreSQL's text and jsonb cannot hold NUL, and a lone surrogate cannot be encoded as
    # UTF-8: refuse both here, by value (the JSON text of a backslash followed by "u0000" is not
    # a NUL), with a clear message instead of the driver's error.
    problem = json_problem(value, max_depth=MAX_JSON_DEPTH, allow_nul=False)
    if problem:
        raise EventStoreValidationError(f"{what} {problem}")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidIdentifierError(f"{what} is not JSON-serialisable: {e}") from e
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes; the limit is {limit} bytes")
    return text
