"""The store's JSON parser reads every stored value as ``json.loads`` does."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from acci.eventstore.db import json_loads

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # of any size: 64-bit parsers turn larger ones into floats
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down (1 and 1.0 are equal, not the same), keys in
    the same order, and floats the same to the sign of zero (-0.0 == 0.0, but not the same)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


@given(JSON_VALUES, st.booleans())
def test_any_json_value_reads_as_json_loads_reads_it(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert same(json_loads(text), json.loads(text))


def test_edge_values_read_as_json_loads_reads_them() -> None:
    for text in (
        b"123456789012345678901234567890",
        b"-9223372036854775809",
        b"18446744073709551616",
        b"0.1",
        b"1.0",
        b"-0.0",
        b"1.5e-400",
        b'{"a": 1, "a": 2}',
        b'{"b": 1, "a": {"d": 2, "c": 3}}',
        b'"\\u00e9\\ud83d\\ude00"',
    ):
        assert same(json_loads(text), json.loads(text)), text
    assert math.isinf(json_loads(b"1e400"))


def test_what_the_fast_parser_refuses_goes_to_json_loads() -> None:
    # A lone surrogate (PostgreSQL's jsonb refuses it, json.loads reads it).
    assert json_loads(b'"\\ud800"') == json.loads(b'"\\ud800"')
