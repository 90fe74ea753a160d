"""What the changes of one shape (kind, table, columns in each role) may become in a batch.

Decided once per shape and table, so that a change costs a dictionary look-up here:

* Where rows might not be independent (a trigger, rule, foreign key or exclusion constraint, a
  unique index other than the key) or a change sets a key column, the whole batch goes one
  statement per change: set-based statements could then meet rows in another order.
* A change whose columns JSON cannot carry as its own statement's parameters would (an unknown
  column, a set operation on a column that is not ``text[]``, a column named twice) runs as its
  own statement, alone ("raw"); so does one whose values JSON carries differently (see
  ``merging.Net.of``, with the checks made here).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from acci.readmodels.changes.change import Change, Update, Upsert, signature
from acci.readmodels.changes.table_facts import TableFacts
from acci.readmodels.changes.type_rules import Check, never


@dataclass(frozen=True, slots=True)
class Shape:
    """What changes of one shape (kind, table, columns in each role) may become."""

    one_by_one: bool  # the whole batch goes one statement per change (a key column changes)
    raw: bool  # such a change runs its own statement (JSON cannot carry it; a column twice)
    row_key: tuple[str, ...]  # the key's columns, sorted
    row: Callable[[Mapping[str, Any]], Any]  # a key's values, in row_key's order
    touched: frozenset[str]
    columns: tuple[tuple[str, ...], ...]  # values, increments, add, remove: sorted
    key_checks: tuple[tuple[str, Check], ...]
    value_checks: tuple[tuple[str, Check], ...]
    increment_checks: tuple[tuple[str, Check], ...]


def shape_of(table: TableFacts, change: Change) -> Shape:
    """The change's shape in ``table`` (made the first time its signature is met)."""
    key = signature(change)
    found: Shape | None = table.shapes.get(key)
    if found is None:
        found = table.shapes[key] = _make_shape(table, change)
    return found


def _make_shape(table: TableFacts, change: Change) -> Shape:
    key = tuple(sorted(change.key))
    values: tuple[str, ...] = ()
    increments: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    if isinstance(change, Upsert | Update):
        values, increments = tuple(change.values), tuple(change.increments)
    if isinstance(change, Update):
        add, remove = tuple(change.add_to_set), tuple(change.remove_from_set)
    listed = (*values, *increments, *add, *remove)
    touched = frozenset(listed)
    known = all(c in table.types for c in (*key, *listed))
    sets = all(table.types.get(c) == "text[]" for c in (*add, *remove))
    unique_names = frozenset(key)
    batchable = table.independent_rows and all(u == unique_names for u in table.unique)
    return Shape(
        one_by_one=not batchable or bool(touched & unique_names),
        raw=not known or not sets or len(touched) < len(listed),
        row_key=key,
        row=operator.itemgetter(*key),
        touched=touched,
        columns=tuple(tuple(sorted(names)) for names in (values, increments, add, remove)),
        key_checks=tuple((c, table.carried.get(c, never)) for c in change.key),
        value_checks=tuple((c, table.carried.get(c, never)) for c in values),
        increment_checks=tuple((c, table.steps.get(c, never)) for c in increments),
    )
