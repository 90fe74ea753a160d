"""PostgreSQL's rules per column type, as far as sending a value in JSON instead of a parameter.

A batch carries its rows' values in one JSON parameter, which ``json_populate_recordset`` (or
``json_to_recordset``) converts column by column; a change's own statement sends each value as
a parameter. The two agree only for some values of some types: these checks say which. A value
they turn down is not an error; its change runs as its own statement (and fails as that fails).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

Check = Callable[[Any], bool]

INT_RANGES: Final = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
TEXT_TYPES: Final = frozenset({"text", "character varying"})
JSON_TYPES: Final = frozenset({"json", "jsonb"})  # the types whose values may be JSON objects


def never(value: Any) -> bool:
    """The check of a column this module knows nothing about: JSON carries none of its values."""
    return False


def plain(text: Any) -> bool:
    """A str PostgreSQL takes as text: no NUL, and UTF-8 encodable (no lone surrogate)."""
    if type(text) is not str or "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def carrier(column_type: str) -> Check:
    """Whether JSON carries a value into a column of this type as a parameter would.

    ``json_populate_recordset`` hands a JSON string to the column type's input function, as
    PostgreSQL does with a str parameter; other JSON values are let through type by type, and
    NULL always. Anything else runs as its own statement.
    """
    if column_type in TEXT_TYPES:
        # (The common case inline: plain for the rest.)
        return lambda v: (
            v is None or (type(v) is str and "\x00" not in v and (v.isascii() or plain(v)))
        )
    if column_type == "uuid":
        return lambda v: v is None or isinstance(v, uuid.UUID) or plain(v)
    if column_type in INT_RANGES:
        return lambda v: v is None or type(v) is int
    if column_type == "double precision":
        return lambda v: v is None or type(v) is int or (type(v) is float and math.isfinite(v))
    if column_type == "boolean":
        return lambda v: v is None or type(v) is bool
    if column_type == "timestamp with time zone":
        return lambda v: v is None or isinstance(v, datetime)
    if column_type == "timestamp without time zone":
        # A timestamp without time zone would drop the offset that a parameter converts.
        return lambda v: v is None or (isinstance(v, datetime) and v.tzinfo is None)
    if column_type in JSON_TYPES:
        return lambda v: v is None or type(v) is dict
    if column_type == "text[]":
        return lambda v: (
            v is None or (type(v) in (list, tuple) and all(i is None or plain(i) for i in v))
        )
    return lambda v: v is None


def step_carrier(column_type: str, carried: Check) -> Check:
    """Whether JSON carries an increment: it goes as a value of the column's type, where an
    ``Update``'s own statement adds a bigint parameter, so it must fit the column."""
    limits = INT_RANGES.get(column_type)
    if limits is None:
        return carried
    low, high = limits
    return lambda v: carried(v) and (v is None or low <= v <= high)
