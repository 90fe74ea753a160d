"""Row changes a projection asks for, and the one place that turns them into SQL.

A projection's ``handle_event`` is pure: it returns these values and the runner applies them,
with the projection's checkpoint, in one transaction. Tables are in the ``read_models`` schema;
table and column names go through ``sql.Identifier`` and values only through parameters.

``apply_changes`` has the effect of running each change's ``statement`` in order, and fails
where that would fail, but sends a batch as a few set-based statements:

* Rows are independent, so only each row's own changes (same table and key) keep their order:
  the n-th change of every row goes out in one statement per shape (table, kind, columns), its
  rows one JSON parameter read by ``json_populate_recordset``, which converts each value with
  its column's type as the one-change statement converts its parameter.
* A row's consecutive changes are merged into one where no failure can hide in between: a value
  overwritten later is one the column certainly takes; increments only add up with the same sign
  (no overflow in between); columns under a CHECK constraint are set once per statement; an
  upsert only takes changes to its own columns (so its insert checks NOT NULL as before).
* Where rows might not be independent (a trigger, rule, foreign key or exclusion constraint, a
  unique index other than the key, a key column changed, keys of two shapes for one table) the
  batch goes one statement per change; so does a change whose values JSON would carry
  differently from a parameter (a str for a jsonb column, say), alone.

What a table allows is read from the catalog once per process and table.
"""

from __future__ import annotations

import json
import math
import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.types.json import Jsonb

from readmodels.errors import ProjectionError

SCHEMA = "read_models"

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Upsert:
    """Insert the row, or update it where its key exists.

    ``values`` are written on insert and on update; ``increments`` are inserted as given and
    added to the stored value on update.
    """

    table: str
    key: Row
    values: Row = field(default_factory=dict)
    increments: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Update:
    """Change the existing row with this key; a missing row fails the event (never ignored).

    ``add_to_set`` / ``remove_from_set`` treat a ``text[]`` column as a sorted set (code-point
    order, no duplicates).
    """

    table: str
    key: Row
    values: Row = field(default_factory=dict)
    increments: Mapping[str, int] = field(default_factory=dict)
    add_to_set: Mapping[str, str] = field(default_factory=dict)
    remove_from_set: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the row with this key, if there is one."""

    table: str
    key: Row


Change = Upsert | Update | Delete


class MissingRowError(ProjectionError):
    """An ``Update`` found no row to change: the read model and the events disagree."""


def _table(name: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, name)


def _names(columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _where(key: Sequence[str]) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in key
    )


def _on_conflict(
    table: str, values: tuple[str, ...], increments: tuple[str, ...]
) -> sql.Composable:
    """What an upsert does to a row that exists: set ``values``, add ``increments``."""
    updates = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in values] + [
        sql.SQL("{0} = {1}.{0} + EXCLUDED.{0}").format(sql.Identifier(c), sql.Identifier(table))
        for c in increments
    ]
    if not updates:
        return sql.SQL("DO NOTHING")
    return sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(updates))


@lru_cache(maxsize=256)
def _upsert_sql(
    table: str, key: tuple[str, ...], values: tuple[str, ...], increments: tuple[str, ...]
) -> sql.Composed:
    columns = key + values + increments
    on_conflict = _on_conflict(table, values, increments)
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
        _table(table),
        _names(columns),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        _names(key),
        on_conflict,
    )


@lru_cache(maxsize=256)
def _update_sql(
    table: str,
    key: tuple[str, ...],
    values: tuple[str, ...],
    increments: tuple[str, ...],
    add_to_set: tuple[str, ...],
    remove_from_set: tuple[str, ...],
) -> sql.Composed:
    sets = (
        [sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in values]
        + [
            sql.SQL("{0} = {0} + {1}").format(sql.Identifier(c), sql.Placeholder())
            for c in increments
        ]
        # Remove, then append, then sort: a set union that keeps one spelling of the array.
        + [
            sql.SQL(
                "{0} = ARRAY(SELECT r FROM unnest(array_append(array_remove({0}, {1}::text),"
                ' {1}::text)) AS u(r) ORDER BY r COLLATE "C")'
            ).format(sql.Identifier(c), sql.Placeholder())
            for c in add_to_set
        ]
        + [
            sql.SQL("{0} = array_remove({0}, {1}::text)").format(
                sql.Identifier(c), sql.Placeholder()
            )
            for c in remove_from_set
        ]
    )
    if not sets:
        # Nothing to set, but the row must exist: touch its key.
        sets = [sql.SQL("{0} = {0}").format(sql.Identifier(key[0]))]
    return sql.SQL("UPDATE {} SET {} WHERE {}").format(
        _table(table), sql.SQL(", ").join(sets), _where(key)
    )


@lru_cache(maxsize=64)
def _delete_sql(table: str, key: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE {}").format(_table(table), _where(key))


def _param(value: Any) -> Any:
    # JSON objects go to jsonb columns; lists of text adapt to text[] on their own.
    return Jsonb(value) if isinstance(value, dict) else value


def statement(change: Change) -> tuple[sql.Composed, list[Any]]:
    """The parameterised SQL of one change."""
    build, shape, params = _parts(change)
    return build(*shape), params


def _parts(
    change: Change,
) -> tuple[Callable[..., sql.Composed], tuple[Any, ...], list[Any]]:
    """The change's SQL builder, its arguments (the statement's shape) and the parameters."""
    build: Callable[..., sql.Composed]
    match change:
        case Upsert():
            build = _upsert_sql
            shape: tuple[Any, ...] = (
                change.table,
                tuple(change.key),
                tuple(change.values),
                tuple(change.increments),
            )
            params = [*change.key.values(), *change.values.values(), *change.increments.values()]
        case Update():
            build = _update_sql
            shape = (
                change.table,
                tuple(change.key),
                tuple(change.values),
                tuple(change.increments),
                tuple(change.add_to_set),
                tuple(change.remove_from_set),
            )
            params = [
                *change.values.values(),
                *change.increments.values(),
                # Each added value is used twice: removed, then appended.
                *(v for value in change.add_to_set.values() for v in (value, value)),
                *change.remove_from_set.values(),
                *change.key.values(),
            ]
        case Delete():
            build = _delete_sql
            shape = (change.table, tuple(change.key))
            params = list(change.key.values())
    return build, shape, [_param(p) for p in params]


async def apply_changes(conn: AsyncConnection[Any], changes: Sequence[Change]) -> None:
    """Run the changes on ``conn`` (inside the caller's transaction), in one round trip.

    The effect is that of running each change's ``statement`` in order (see the module's
    docstring for how a batch is regrouped). Raises ``MissingRowError`` when an ``Update`` found
    no row, and psycopg's error when the database refused a change; either way the caller's
    transaction must be rolled back. (The first time a table is met, reading what it allows from
    the catalog costs a round trip more.)
    """
    if not changes:
        return
    tables = await _tables(conn, {change.table for change in changes})
    layers = _layers(changes, tables)
    batches = None
    if layers is not None:
        try:
            batches = [batch for layer in layers for batch in _batches(layer, tables)]
        except (TypeError, ValueError):
            batches = None  # a value JSON cannot carry: one by one, failing as that fails
    if batches is None:
        batches = [_Batch(_one_statement(change), [_Net.raw(change)]) for change in changes]
    checked: list[tuple[_Batch, AsyncCursor[Any]]] = []
    async with conn.pipeline():
        for batch in batches:
            cur = conn.cursor()
            await cur.execute(*batch.statement, prepare=batch.prepare)
            if batch.checks_rows:
                checked.append((batch, cur))
    for batch, cur in checked:
        await batch.check(cur)


# -- applying a batch ---------------------------------------------------------------------------

_INT_RANGES: Final = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_TEXT_TYPES: Final = frozenset({"text", "character varying"})

# What each table allows, by (host, port, database, table): read once per process.
_TABLE_INFO: dict[tuple[str, int, str, str], _Table] = {}

_CATALOG: Final = (
    "SELECT n.name, c.oid IS NOT NULL AND c.relkind = 'r' AND NOT c.relhasrules"
    " AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)"
    " AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.contype IN ('f', 'x', 't')"
    " AND (k.conrelid = c.oid OR k.confrelid = c.oid))"
    " AND NOT EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = c.oid OR i.inhrelid = c.oid),"
    " (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod),"
    " a.attnotnull)) FROM pg_attribute a"
    " WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),"
    " (SELECT json_agg((SELECT array_agg(a.attname) FROM pg_attribute a"
    " WHERE a.attrelid = c.oid AND a.attnum = ANY(k.conkey)))"
    " FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c'),"
    " (SELECT json_agg(CASE WHEN x.indexprs IS NULL AND x.indpred IS NULL"
    " THEN (SELECT array_agg(a.attname) FROM pg_attribute a"
    " WHERE a.attrelid = c.oid AND a.attnum = ANY(x.indkey)) END)"
    " FROM pg_index x WHERE x.indrelid = c.oid AND x.indisunique)"
    " FROM unnest(%s::text[]) AS n(name)"
    " LEFT JOIN pg_class c ON c.oid = to_regclass(format('%%I.%%I', %s::text, n.name))"
)


Check = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class _Shape:
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


@dataclass(frozen=True, slots=True)
class _Table:
    """What the catalog says about a read-model table, as far as batching its changes goes."""

    # No trigger, rule, foreign key, exclusion constraint or inheritance: a row changes alone.
    independent_rows: bool
    types: Mapping[str, str]  # column -> format_type()
    not_null: frozenset[str]
    checks: tuple[frozenset[str], ...]  # the columns of each CHECK constraint
    unique: tuple[frozenset[str] | None, ...]  # each unique index's columns (None: expression)
    carried: Mapping[str, Check]  # column -> whether JSON carries a value as a parameter would
    shapes: dict[tuple[Any, ...], _Shape] = field(default_factory=dict, compare=False)
    steps: dict[str, Check] = field(default_factory=dict, compare=False)

    def shape(self, change: Change) -> _Shape:
        match change:
            case Upsert():
                signature: tuple[Any, ...] = (
                    Upsert,
                    change.table,
                    tuple(change.key),
                    tuple(change.values),
                    tuple(change.increments),
                )
            case Update():
                signature = (
                    Update,
                    change.table,
                    tuple(change.key),
                    tuple(change.values),
                    tuple(change.increments),
                    tuple(change.add_to_set),
                    tuple(change.remove_from_set),
                )
            case Delete():
                signature = (Delete, change.table, tuple(change.key))
        found = self.shapes.get(signature)
        if found is None:
            found = self.shapes[signature] = self._shape(change)
        return found

    def _shape(self, change: Change) -> _Shape:
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
        known = all(c in self.types for c in (*key, *listed))
        sets = all(self.types.get(c) == "text[]" for c in (*add, *remove))
        unique_names = frozenset(key)
        batchable = self.independent_rows and all(u == unique_names for u in self.unique)
        return _Shape(
            one_by_one=not batchable or bool(touched & unique_names),
            raw=not known or not sets or len(touched) < len(listed),
            row_key=key,
            row=operator.itemgetter(*key),
            touched=touched,
            columns=tuple(tuple(sorted(names)) for names in (values, increments, add, remove)),
            key_checks=tuple((c, self.carried.get(c, _never)) for c in change.key),
            value_checks=tuple((c, self.carried.get(c, _never)) for c in values),
            increment_checks=tuple((c, self.step(c)) for c in increments),
        )

    def step(self, column: str) -> Check:
        """An increment is carried as a value of the column's type, where an Update's own
        statement adds a bigint parameter: it must fit the column."""
        found = self.steps.get(column)
        if found is None:
            found = self.steps[column] = self._make_step(column)
        return found

    def _make_step(self, column: str) -> Check:
        carried = self.carried.get(column, _never)
        limits = _INT_RANGES.get(self.types.get(column, ""))
        if limits is None:
            return carried
        low, high = limits
        return lambda v: carried(v) and (v is None or low <= v <= high)


async def _tables(conn: AsyncConnection[Any], names: set[str]) -> dict[str, _Table]:
    info = conn.info
    where = (str(info.host), int(info.port), str(info.dbname))
    found = {n: t for n in names if (t := _TABLE_INFO.get((*where, n))) is not None}
    missing = sorted(names - found.keys())
    if missing:
        cur = await conn.execute(_CATALOG, (missing, SCHEMA))
        for name, independent, columns, checks, unique in await cur.fetchall():
            if columns is None:
                continue  # no such table: its changes go one by one, and fail as they do
            types = {c: t for c, t, _ in columns}
            table = _Table(
                independent_rows=bool(independent),
                types=types,
                not_null=frozenset(c for c, _, required in columns if required),
                checks=tuple(frozenset(c) for c in checks or ()),
                unique=tuple(None if u is None else frozenset(u) for u in unique or ()),
                carried={c: _carrier(t) for c, t in types.items()},
            )
            found[name] = _TABLE_INFO[(*where, name)] = table
    return found


def _never(value: Any) -> bool:
    return False


def _carrier(column_type: str) -> Check:
    """Whether JSON carries a value into a column of this type as a parameter would.

    ``json_populate_recordset`` hands a JSON string to the column type's input function, as
    PostgreSQL does with a str parameter; other JSON values are let through type by type, and
    NULL always. Anything else runs as its own statement.
    """
    if column_type in _TEXT_TYPES:
        # (The common case inline: _plain for the rest.)
        return lambda v: (
            v is None or (type(v) is str and "\x00" not in v and (v.isascii() or _plain(v)))
        )
    if column_type == "uuid":
        return lambda v: v is None or isinstance(v, uuid.UUID) or _plain(v)
    if column_type in _INT_RANGES:
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
    if column_type in ("json", "jsonb"):
        return lambda v: v is None or type(v) is dict
    if column_type == "text[]":
        return lambda v: (
            v is None or (type(v) in (list, tuple) and all(i is None or _plain(i) for i in v))
        )
    return lambda v: v is None


def _certain(table: _Table, column: str, value: Any) -> bool:
    """Whether the column certainly takes the value (so a later change may overwrite it
    unseen)."""
    if value is None:
        return column not in table.not_null
    if not table.carried.get(column, _never)(value):
        return False
    column_type = table.types[column]
    if type(value) is int and column_type in _INT_RANGES:
        low, high = _INT_RANGES[column_type]
        return low <= value <= high
    if type(value) is str:
        return column_type in _TEXT_TYPES  # no length limit
    if type(value) is dict:
        try:
            text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError):
            return False
        return "\\u0000" not in text and _plain(text)  # jsonb takes neither
    return True


def _plain(text: Any) -> bool:
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


_UNMERGED: Final = object()  # a merge that cannot be done exactly
_EMPTY: Final[Mapping[str, Any]] = {}
_EMPTY_DICT: Final[dict[str, Any]] = {}  # never written to: only a set op writes add/remove


class _Net:
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
        shape: _Shape | None = None,
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
    def raw(cls, change: Change) -> _Net:
        return cls(change, "raw")

    @classmethod
    def of(cls, change: Change, shape: _Shape) -> _Net:
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
        if (add or remove) and not all(map(_plain, (*add.values(), *remove.values()))):
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

    def merge(self, net: _Net, table: _Table) -> bool:
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
        # First whether it can be done (a net's columns each have one role), then do it.
        values, increments, add, remove = self.values, self.increments, self.add, self.remove
        for column in net.values:
            if column in increments:
                return False  # the increment could have overflowed on the stored value
            if column in values and not _certain(table, column, values[column]):
                return False
        sums: dict[str, Any] = {}
        for column, step in net.increments.items():
            if column in values:
                sums[column] = _sum(table, column, values[column], step)
                if sums[column] is _UNMERGED:
                    return False
            elif column in add or column in remove:
                return False
            elif column in increments:
                before = increments[column]
                if not _same_sign(before, step) or not table.step(column)(before + step):
                    return False
        for column in (*net.add, *net.remove):
            if column in values:
                items = values[column]
                if not _certain(table, column, items) or (
                    items is not None and not all(type(v) is str for v in items)
                ):
                    return False
            elif column in increments or column in add or column in remove:
                return False
        # Until now the first change's own mappings: copied before the first write.
        new_values, new_increments = dict(values), dict(increments)
        new_add = dict(add) if add or net.add else _EMPTY_DICT
        new_remove = dict(remove) if remove or net.remove else _EMPTY_DICT
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


def _sum(table: _Table, column: str, value: Any, step: Any) -> Any:
    if type(value) is not int or type(step) is not int:
        return _UNMERGED
    low, high = _INT_RANGES.get(table.types.get(column) or "", (None, None))
    total = value + step
    if low is None or high is None or not all(low <= v <= high for v in (value, step, total)):
        return _UNMERGED
    return total


def _same_sign(a: object, b: object) -> bool:
    """Both ints, neither below zero or neither above it: their partial sums are monotonic."""
    if type(a) is not int or type(b) is not int:
        return False
    return (a >= 0 and b >= 0) or (a <= 0 and b <= 0)


def _layers(changes: Sequence[Change], tables: Mapping[str, _Table]) -> list[list[_Net]] | None:
    """Each row's changes merged where exact; layer n holds every row's n-th statement.

    None: the changes must go one by one, in order.
    """
    rows: dict[tuple[Any, ...], list[_Net]] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for change in changes:
        table = tables.get(change.table)
        if table is None:
            return None
        shape = table.shape(change)
        if shape.one_by_one or keys.setdefault(change.table, shape.row_key) != shape.row_key:
            return None
        try:
            segments = rows.setdefault((change.table, shape.row(change.key)), [])
        except TypeError:
            return None  # an unhashable key value
        net = _Net.of(change, shape)
        if not (segments and segments[-1].merge(net, table)):
            segments.append(net)
    depth = max(len(segments) for segments in rows.values())
    if depth == 1:
        return [[segments[0] for segments in rows.values()]]
    return [[s[n] for s in rows.values() if n < len(s)] for n in range(depth)]


@dataclass(slots=True)
class _Batch:
    """One statement, and the nets (rows) it changes."""

    statement: tuple[Any, Any]
    nets: list[_Net]

    @property
    def prepare(self) -> bool | None:
        """False for a join of the records with the table: planned for each batch, with the
        table's size as it is now (a plan prepared while a table was small would go on scanning
        all of it once it has grown, as it does while a projection rebuilds from scratch)."""
        return False if self.nets[0].kind in ("update", "delete") else None

    @property
    def checks_rows(self) -> bool:
        kind = self.nets[0].kind
        return kind == "update" or (kind == "raw" and isinstance(self.nets[0].change, Update))

    async def check(self, cur: AsyncCursor[Any]) -> None:
        if self.nets[0].kind == "raw":
            missing = [self.nets[0]] if cur.rowcount == 0 else []
        else:
            found = {row[0] for row in await cur.fetchall()}
            missing = [n for i, n in enumerate(self.nets, start=1) if i not in found]
        if missing:
            change = missing[0].change
            raise MissingRowError(
                f"no row in {SCHEMA}.{change.table} with key {dict(change.key)} to update"
            )


def _one_statement(change: Change) -> tuple[bytes, list[Any]]:
    build, shape, params = _parts(change)
    return _as_bytes(build, shape), params


@lru_cache(maxsize=512)
def _as_bytes(build: Callable[..., sql.Composed], shape: tuple[Any, ...]) -> bytes:
    # Rendering a Composed costs more than running most of these statements: once per shape.
    return build(*shape).as_bytes(None)


def _batches(layer: list[_Net], tables: Mapping[str, _Table]) -> list[_Batch]:
    """The layer's statements: one per table for its updates (each row setting, adding to or
    taking from only its own columns), one per shape for upserts and deletes, and each raw
    change's own."""
    groups: dict[tuple[Any, ...], list[_Net]] = {}
    out: list[_Batch] = []
    for net in layer:
        if net.kind == "raw" or net.shape is None:
            out.append(_Batch(_one_statement(net.change), [net]))
            continue
        group: tuple[Any, ...] = (net.change.table, net.kind, net.shape.row_key)
        if net.kind == "upsert":
            group += (net.columns,)
        groups.setdefault(group, []).append(net)
    for (table, kind, key, *shape), nets in groups.items():
        if kind == "update":
            out.append(_updates(tables[table], table, key, nets))
            continue
        if kind == "upsert":
            values, increments, _, _ = shape[0]
            query = _upsert_many_sql(table, key, values, increments)
        else:
            query = _delete_many_sql(table, key)
        rows = []
        for net in nets:
            row = _key_record(net)
            for column, value in net.values.items():
                row[column] = value.isoformat() if type(value) is datetime else _json_value(value)
            for column, value in net.increments.items():
                row[column] = value
            rows.append(row)
        text = json.dumps(rows, allow_nan=False, separators=(",", ":"))
        # A delete's join gets the number of records too, as a LIMIT (see _Batch.prepare).
        params = (text,) if kind == "upsert" else (text, len(nets))
        out.append(_Batch((query, params), nets))
    return out


def _key_record(net: _Net) -> dict[str, Any]:
    return {c: v if type(v) is str else _json_value(v) for c, v in net.change.key.items()}


# How an update sets a column in one row of the shared statement (0, absent: left as it is).
_SET, _INCREMENT, _ADD, _REMOVE = 1, 2, 3, 4


def _updates(table: _Table, name: str, key: tuple[str, ...], nets: list[_Net]) -> _Batch:
    """One UPDATE for the layer's updates of a table: each record says, column by column,
    whether its row sets it, adds to it, adds to or takes from the set in it, or leaves it."""
    roles: dict[str, set[int]] = {}
    for net in nets:
        for mapping, role in (
            (net.values, _SET),
            (net.increments, _INCREMENT),
            (net.add, _ADD),
            (net.remove, _REMOVE),
        ):
            for column in mapping:
                roles.setdefault(column, set()).add(role)
    columns = sorted(roles)
    index = {c: i for i, c in enumerate(columns)}
    rows = []
    for net in nets:
        row: dict[str, Any] = {f"k{i}": net.change.key[c] for i, c in enumerate(key)}
        for k, value in row.items():
            if type(value) is not str:
                row[k] = _json_value(value)
        for column, value in net.values.items():
            i = index[column]
            row[f"m{i}"] = _SET
            row[f"s{i}"] = value.isoformat() if type(value) is datetime else _json_value(value)
        for column, value in net.increments.items():
            i = index[column]
            row[f"m{i}"], row[f"s{i}"] = _INCREMENT, value
        for column, item in net.add.items():
            i = index[column]
            row[f"m{i}"], row[f"e{i}"] = _ADD, item
        for column, item in net.remove.items():
            i = index[column]
            row[f"m{i}"], row[f"e{i}"] = _REMOVE, item
        rows.append(row)
    text = json.dumps(rows, allow_nan=False, separators=(",", ":"))
    shape = tuple((c, tuple(sorted(roles[c]))) for c in columns)
    types = tuple(table.types[c] for c in (*key, *columns))
    return _Batch((_update_many_sql(name, key, shape, types), (text, len(nets))), nets)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _records(table: str) -> sql.Composed:
    return sql.SQL("json_populate_recordset(NULL::{}, %s::json)").format(_table(table))


@lru_cache(maxsize=256)
def _upsert_many_sql(
    table: str, key: tuple[str, ...], values: tuple[str, ...], increments: tuple[str, ...]
) -> bytes:
    columns = _names(key + values + increments)
    on_conflict = _on_conflict(table, values, increments)
    return (
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}")
        .format(_table(table), columns, columns, _records(table), _names(key), on_conflict)
        .as_bytes(None)
    )


def _matching(key: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(" AND ").join(sql.SQL("_t.{0} = _u.{0}").format(sql.Identifier(c)) for c in key)


@lru_cache(maxsize=512)
def _update_many_sql(
    table: str,
    key: tuple[str, ...],
    columns: tuple[tuple[str, tuple[int, ...]], ...],
    types: tuple[str, ...],
) -> bytes:
    """As ``_update_sql`` for each record's row, column by column as its m<i> says.

    The records' fields (typed as the table's columns, so that JSON converts each value as a
    parameter of that column would be): k<i> the key, s<i> a value to set or add, e<i> an item
    for a set, m<i> what to do with column i (CASE evaluates the branch taken only).
    """
    key_types, column_types = types[: len(key)], types[len(key) :]
    fields = [
        sql.SQL("{} {}").format(sql.Identifier(f"k{i}"), sql.SQL(t))
        for i, t in enumerate(key_types)
    ]
    sets = []
    for i, ((column, roles), column_type) in enumerate(zip(columns, column_types, strict=True)):
        c = sql.Identifier(column)
        m, v, e = sql.Identifier(f"m{i}"), sql.Identifier(f"s{i}"), sql.Identifier(f"e{i}")
        fields.append(sql.SQL("{} smallint").format(m))
        if _SET in roles or _INCREMENT in roles:
            fields.append(sql.SQL("{} {}").format(v, sql.SQL(column_type)))
        if _ADD in roles or _REMOVE in roles:
            fields.append(sql.SQL("{} text").format(e))
        branches = {
            _SET: sql.SQL("_u.{}").format(v),
            _INCREMENT: sql.SQL("_t.{} + _u.{}").format(c, v),
            _ADD: sql.SQL(
                "ARRAY(SELECT r FROM unnest(array_append(array_remove(_t.{0}, _u.{1}), _u.{1}))"
                ' AS _a(r) ORDER BY r COLLATE "C")'
            ).format(c, e),
            _REMOVE: sql.SQL("array_remove(_t.{}, _u.{})").format(c, e),
        }
        cases = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(sql.Literal(role), branches[role]) for role in roles
        )
        sets.append(sql.SQL("{0} = CASE _u.{1} {2} ELSE _t.{0} END").format(c, m, cases))
    if not sets:
        sets = [sql.SQL("{0} = _t.{0}").format(sql.Identifier(key[0]))]
    matching = sql.SQL(" AND ").join(
        sql.SQL("_t.{} = _u.{}").format(sql.Identifier(c), sql.Identifier(f"k{i}"))
        for i, c in enumerate(key)
    )
    return (
        sql.SQL(
            "UPDATE {} AS _t SET {} FROM (SELECT * FROM ROWS FROM"
            " (json_to_recordset(%s::json) AS ({})) WITH ORDINALITY AS _r LIMIT %s) AS _u"
            " WHERE {} RETURNING _u.ordinality"
        )
        .format(_table(table), sql.SQL(", ").join(sets), sql.SQL(", ").join(fields), matching)
        .as_bytes(None)
    )


@lru_cache(maxsize=64)
def _delete_many_sql(table: str, key: tuple[str, ...]) -> bytes:
    return (
        sql.SQL("DELETE FROM {} AS _t USING (SELECT * FROM {} LIMIT %s) AS _u WHERE {}")
        .format(_table(table), _records(table), _matching(key))
        .as_bytes(None)
    )
