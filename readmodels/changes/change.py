"""What a change means: the change values a projection returns, and one change's SQL statement.

A projection's ``handle_event`` is pure: it returns these values and the runner applies them,
with the projection's checkpoint, in one transaction. Tables are in the ``read_models`` schema;
table and column names go through ``sql.Identifier`` and values only through parameters.
``statement`` is the definition of a change: whatever way a batch is sent (``apply.py``), its
effect and its failure are those of each change's statement, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from acci.readmodels.errors import ProjectionError

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


def table_name(table: str) -> sql.Identifier:
    """The read-model table, qualified with its schema."""
    return sql.Identifier(SCHEMA, table)


def column_list(columns: Sequence[str]) -> sql.Composed:
    """The columns, as a comma-separated list of identifiers."""
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _where(key: Sequence[str]) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in key
    )


def on_conflict(table: str, values: tuple[str, ...], increments: tuple[str, ...]) -> sql.Composable:
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
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
        table_name(table),
        column_list(columns),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        column_list(key),
        on_conflict(table, values, increments),
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
        table_name(table), sql.SQL(", ").join(sets), _where(key)
    )


@lru_cache(maxsize=64)
def _delete_sql(table: str, key: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE {}").format(table_name(table), _where(key))


def renamed(change: Change, table: str) -> Change:
    """``change`` to the table ``table`` (itself if it names that table already)."""
    if change.table == table:
        return change
    # Built directly: dataclasses.replace costs several times as much.
    match change:
        case Upsert():
            return Upsert(table, change.key, change.values, change.increments)
        case Update():
            return Update(
                table,
                change.key,
                change.values,
                change.increments,
                change.add_to_set,
                change.remove_from_set,
            )
        case Delete():
            return Delete(table, change.key)


def _param(value: Any) -> Any:
    # JSON objects go to jsonb columns; lists of text adapt to text[] on their own.
    return Jsonb(value) if isinstance(value, dict) else value


def statement(change: Change) -> tuple[sql.Composed, list[Any]]:
    """The parameterised SQL of one change."""
    build, shape, params = _parts(change)
    return build(*shape[1:]), params


def statement_bytes(change: Change) -> tuple[bytes, list[Any]]:
    """``statement``, its SQL rendered once per shape (as a batch sends a change on its own)."""
    build, shape, params = _parts(change)
    return _as_bytes(build, shape), params


@lru_cache(maxsize=512)
def _as_bytes(build: Callable[..., sql.Composed], shape: tuple[Any, ...]) -> bytes:
    # Rendering a Composed costs more than running most of these statements: once per shape.
    return build(*shape[1:]).as_bytes(None)


def signature(change: Change) -> tuple[Any, ...]:
    """What a change's statement depends on besides its values: its kind, table and the
    columns in each role, in the order given. Changes of one signature share a statement."""
    match change:
        case Upsert():
            return (
                Upsert,
                change.table,
                tuple(change.key),
                tuple(change.values),
                tuple(change.increments),
            )
        case Update():
            return (
                Update,
                change.table,
                tuple(change.key),
                tuple(change.values),
                tuple(change.increments),
                tuple(change.add_to_set),
                tuple(change.remove_from_set),
            )
        case Delete():
            return (Delete, change.table, tuple(change.key))


def _parts(
    change: Change,
) -> tuple[Callable[..., sql.Composed], tuple[Any, ...], list[Any]]:
    """The change's SQL builder, its signature (the statement's shape) and the parameters."""
    build: Callable[..., sql.Composed]
    match change:
        case Upsert():
            build = _upsert_sql
            params = [*change.key.values(), *change.values.values(), *change.increments.values()]
        case Update():
            build = _update_sql
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
            params = list(change.key.values())
    shape = signature(change)
    return build, shape, [_param(p) for p in params]
