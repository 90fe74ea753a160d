"""A row's consecutive changes merged into one, where no failure can hide in between.

``apply_changes`` promises the failure of the changes one by one as well as their effect, so a
merge must not skip a statement that would have failed:

* A value overwritten later is one the column certainly takes (its type, NOT NULL).
* Increments only add up with the same sign (no overflow in between), and an increment on a
  value set before it becomes the sum, if that fits the column.
* Columns under a CHECK constraint are set once per statement (the constraint sees each step).
* An upsert only takes changes to its own columns, and is only taken by an upsert of the same
  columns (its insert is tried, and NOT NULL checked, even where the row exists).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from acci.readmodels.changes.change import Change, Delete, Upsert
from acci.readmodels.changes.shapes import Shape
from acci.readmodels.changes.table_facts import TableFacts
from acci.readmodels.changes.type_rules import INT_RANGES, TEXT_TYPES, never, plain

_UNMERGED: Final = object()  # a merge that cannot be done exactly
_EMPTY: Final[Mapping[str, Any]] = {}
_EMPTY_DICT: Final[dict[str, Any]] = {}  # never written to: only a set op writes add/remove


class Net:
    """One row's consecutive changes as one (or one change that runs as its own statement)."""

    __slots__ = (
        "add",
        "change",
        "increments",
        "kind",
        "merged",
        "remove",
        "shape",
        "touched",
        "values",
    )

    def __init__(
        self,
        change: Change,
        kind: str,
        shape: Shape | None = None,
        values: Mapping[str, Any] = _EMPTY,
        increments: Mapping[str, Any] = _EMPTY,
        add: Mapping[str, str] = _EMPTY,
        remove: Mapping[str, str] = _EMPTY,
    ) -> None:
        self.change = change  # the first one; raw nets run its own statement
        self.kind = kind  # "upsert", "update", "delete", or "raw"
        self.shape = shape
        self.merged = False
        # The first change's own mappings until a merge (which copies them before writing).
        self.values = values
        self.increments = increments
        self.add = add
        self.remove = remove
        self.touched = shape.touched if shape is not None else frozenset()

    @classmethod
    def raw(cls, change: Change) -> Net:
        """The change as its own statement."""
        return cls(change, "raw")

    @classmethod
    def of(cls, change: Change, shape: Shape) -> Net:
        """The change as a net; "raw" if JSON cannot carry it as its own statement would."""
        if shape.raw:
            return cls.raw(change)
        key = change.key
        for column, carried in shape.key_checks:
            if not carried(key[column]):
                return cls.raw(change)
        if isinstance(change, Delete):
            return cls(change, "delete", shape)
        values, increments = change.values, change.increments
        for column, carried in shape.value_checks:
            if not carried(values[column]):
                return cls.raw(change)
        for column, carried in shape.increment_checks:
            if not carried(increments[column]):
                return cls.raw(change)
        if isinstance(change, Upsert):
            return cls(change, "upsert", shape, values, increments)
        add, remove = change.add_to_set, change.remove_from_set
        if (add or remove) and not all(map(plain, (*add.values(), *remove.values()))):
            return cls.raw(change)
        return cls(change, "update", shape, values, increments, add, remove)

    @property
    def columns(self) -> tuple[tuple[str, ...], ...]:
        """The statement's shape: its columns in each role."""
        if not self.merged and self.shape is not None:
            return self.shape.columns
        return (
            tuple(sorted(self.values)),
            tuple(sorted(self.increments)),
            tuple(sorted(self.add)),
            tuple(sorted(self.remove)),
        )

    def merge(self, net: Net, table: TableFacts) -> bool:
        """Take ``net`` (this row's next change) into this one if that hides no failure."""
        if self.kind not in ("upsert", "update") or net.kind not in ("upsert", "update"):
            return False
        if net.kind == "upsert":
            # Its insert is tried (and NOT NULL and CHECKs tested) even where the row exists:
            # only the same columns are certain to pass as they did in this one.
            if self.kind != "upsert" or net.touched != self.touched:
                return False
        elif self.kind == "upsert" and not net.touched <= self.touched:
            return False
        if table.checks and any(
            check & self.touched and check & net.touched for check in table.checks
        ):
            return False
        sums = _exact_sums(self, net, table)
        if sums is None:
            return False
        # Until now the first change's own mappings: copied before the first write.
        new_values, new_increments = dict(self.values), dict(self.increments)
        new_add = dict(self.add) if self.add or net.add else _EMPTY_DICT
        new_remove = dict(self.remove) if self.remove or net.remove else _EMPTY_DICT
        for column, value in net.values.items():
            if new_add:
                new_add.pop(column, None)
            if new_remove:
                new_remove.pop(column, None)
            new_values[column] = value
        for column, step in net.increments.items():
            if column in sums:
                new_values[column] = sums[column]
            else:
                new_increments[column] = new_increments.get(column, 0) + step
        for column, item in net.add.items():
            if column in new_values:
                new_values[column] = _add_to_set(new_values[column], item)
            else:
                new_add[column] = item
        for column, item in net.remove.items():
            if column in new_values:
                new_values[column] = _remove_from_set(new_values[column], item)
            else:
                new_remove[column] = item
        self.values, self.increments = new_values, new_increments
        self.add, self.remove = new_add, new_remove
        self.merged = True
        self.touched |= net.touched
        return True


def _exact_sums(first: Net, net: Net, table: TableFacts) -> dict[str, Any] | None:
    """None if taking ``net`` into ``first`` could hide a failure (each of a net's columns has
    one role); else the values ``net``'s increments make of values ``first`` sets."""
    values, increments, add, remove = first.values, first.increments, first.add, first.remove
    for column in net.values:
        if column in increments:
            return None  # the increment could have overflowed on the stored value
        if column in values and not _certain(table, column, values[column]):
            return None
    sums: dict[str, Any] = {}
    for column, step in net.increments.items():
        if column in values:
            sums[column] = _sum(table, column, values[column], step)
            if sums[column] is _UNMERGED:
                return None
        elif column in add or column in remove:
            return None
        elif column in increments:
            before = increments[column]
            if not _same_sign(before, step) or not table.steps.get(column, never)(before + step):
                return None
    for column in (*net.add, *net.remove):
        if column in values:
            items = values[column]
            if not _certain(table, column, items) or (
                items is not None and not all(type(v) is str for v in items)
            ):
                return None
        elif column in increments or column in add or column in remove:
            return None
    return sums


def _certain(table: TableFacts, column: str, value: Any) -> bool:
    """Whether the column certainly takes the value (so a later change may overwrite it
    unseen)."""
    if value is None:
        return column not in table.not_null
    if not table.carried.get(column, never)(value):
        return False
    column_type = table.types[column]
    if type(value) is int and column_type in INT_RANGES:
        low, high = INT_RANGES[column_type]
        return low <= value <= high
    if type(value) is str:
        return column_type in TEXT_TYPES  # no length limit
    if type(value) is dict:
        try:
            text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError):
            return False
        return "\\u0000" not in text and plain(text)  # jsonb takes neither
    return True


def _sum(table: TableFacts, column: str, value: Any, step: Any) -> Any:
    if type(value) is not int or type(step) is not int:
        return _UNMERGED
    low, high = INT_RANGES.get(table.types.get(column) or "", (None, None))
    total = value + step
    if low is None or high is None or not all(low <= v <= high for v in (value, step, total)):
        return _UNMERGED
    return total


def _same_sign(a: object, b: object) -> bool:
    """Both ints, neither below zero or neither above it: their partial sums are monotonic."""
    if type(a) is not int or type(b) is not int:
        return False
    return (a >= 0 and b >= 0) or (a <= 0 and b <= 0)


def _add_to_set(items: Sequence[str] | None, value: str) -> list[str]:
    """What the ``add_to_set`` SQL makes of an array of text."""
    if items is None:
        return [value]  # array_append(NULL, x)
    return sorted([v for v in items if v != value] + [value])  # code-point order, as "C"


def _remove_from_set(items: Sequence[str] | None, value: str) -> list[str] | None:
    """What the ``remove_from_set`` SQL makes of an array of text."""
    if items is None:
        return None
    return [v for v in items if v != value]
