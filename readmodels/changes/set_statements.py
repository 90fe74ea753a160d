"""The set-based statements a batch sends: many rows' changes in one statement.

The rows travel as one JSON parameter, read by ``json_populate_recordset`` (typed as the table)
or ``json_to_recordset`` (typed column by column from the catalog), which converts each value
with its column's type as the one-change statement converts its parameter (``type_rules.py``
says where the two agree; the planner only sends such values). Each statement returns the SQL
(rendered once per shape) and its parameters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from psycopg import sql
from pydantic_core import to_json

from acci.readmodels.changes.change import column_list, on_conflict, table_name
from acci.readmodels.changes.merging import Net
from acci.readmodels.changes.table_facts import TableFacts
from acci.readmodels.changes.type_rules import JSON_TYPES

Statement = tuple[bytes, tuple[Any, ...]]

# How an update sets a column in one row of the shared statement (0, absent: left as it is).
_SET, _INCREMENT, _ADD, _REMOVE = 1, 2, 3, 4


def upsert_many(
    table: TableFacts,
    name: str,
    key: tuple[str, ...],
    columns: tuple[tuple[str, ...], ...],
    nets: list[Net],
) -> Statement:
    """One INSERT ... ON CONFLICT for upserts of the same columns (values, increments)."""
    values, increments, _, _ = columns
    records = _records(nets, objects=_objects(table, (*key, *values)))
    return _upsert_many_sql(name, key, values, increments), (records,)


def delete_many(table: TableFacts, name: str, key: tuple[str, ...], nets: list[Net]) -> Statement:
    """One DELETE for deletes of rows with the same key columns."""
    # The join gets the number of records too, as a LIMIT (see planner.Batch.prepare).
    return _delete_many_sql(name, key), (_records(nets, objects=_objects(table, key)), len(nets))


def update_many(table: TableFacts, name: str, key: tuple[str, ...], nets: list[Net]) -> Statement:
    """One UPDATE for a table's updates: each record says, column by column, whether its row
    sets it, adds to it, adds to or takes from the set in it, or leaves it."""
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
    # Each column's fields in a record, named once per statement rather than once per row.
    fields = {c: (f"m{i}", f"s{i}", f"e{i}") for i, c in enumerate(columns)}
    key_fields = [(f"k{i}", c) for i, c in enumerate(key)]
    rows = []
    for net in nets:
        row: dict[str, Any] = {}
        change_key = net.change.key
        for field, column in key_fields:
            value = change_key[column]
            row[field] = value if type(value) is str else _json_value(value)
        for column, value in net.values.items():
            m, v, _ = fields[column]
            row[m], row[v] = _SET, value if type(value) is str else _json_value(value)
        for column, value in net.increments.items():
            m, v, _ = fields[column]
            row[m], row[v] = _INCREMENT, value
        for column, item in net.add.items():
            m, _, e = fields[column]
            row[m], row[e] = _ADD, item
        for column, item in net.remove.items():
            m, _, e = fields[column]
            row[m], row[e] = _REMOVE, item
        rows.append(row)
    text = _dumps(rows, objects=_objects(table, (*key, *columns)))
    shape = tuple((c, tuple(sorted(roles[c]))) for c in columns)
    types = tuple(table.types[c] for c in (*key, *columns))
    return _update_many_sql(name, key, shape, types), (text, len(nets))


def _records(nets: list[Net], *, objects: bool) -> str:
    """The rows as a JSON array of records named as the table's columns."""
    rows = []
    for net in nets:
        row = {c: v if type(v) is str else _json_value(v) for c, v in net.change.key.items()}
        for column, value in net.values.items():
            row[column] = value if type(value) is str else _json_value(value)
        for column, value in net.increments.items():
            row[column] = value
        rows.append(row)
    return _dumps(rows, objects=objects)


def _objects(table: TableFacts, columns: Iterable[str]) -> bool:
    """Whether records of these columns may hold JSON objects (a json or jsonb column's)."""
    return any(table.types.get(c) in JSON_TYPES for c in columns)


def _dumps(rows: list[dict[str, Any]], *, objects: bool) -> str:
    """The records as JSON text.

    The planner sends only values of the types JSON carries as a parameter would
    (``type_rules.py``): str (UTF-8 encodable), int, finite float, bool, None, lists of str, and
    dicts in json/jsonb columns. Without dicts (``objects`` False) pydantic's encoder writes them
    as ``json.dumps`` does, about 5x as fast; a dict goes through ``json.dumps``, which refuses
    (TypeError, ValueError: the batch then goes one statement per change) what the one-change
    statement's ``Jsonb`` refuses too, where pydantic's encoder would write sets, bytes or
    datetimes.
    """
    if objects:
        return json.dumps(rows, allow_nan=False, separators=(",", ":"))
    return to_json(rows).decode()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _as_table(table: str) -> sql.Composed:
    return sql.SQL("json_populate_recordset(NULL::{}, %s::json)").format(table_name(table))


@lru_cache(maxsize=256)
def _upsert_many_sql(
    table: str, key: tuple[str, ...], values: tuple[str, ...], increments: tuple[str, ...]
) -> bytes:
    columns = column_list(key + values + increments)
    return (
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}")
        .format(
            table_name(table),
            columns,
            columns,
            _as_table(table),
            column_list(key),
            on_conflict(table, values, increments),
        )
        .as_bytes(None)
    )


@lru_cache(maxsize=512)
def _update_many_sql(
    table: str,
    key: tuple[str, ...],
    columns: tuple[tuple[str, tuple[int, ...]], ...],
    types: tuple[str, ...],
) -> bytes:
    """As the one-change UPDATE for each record's row, column by column as its m<i> says.

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
        .format(table_name(table), sql.SQL(", ").join(sets), sql.SQL(", ").join(fields), matching)
        .as_bytes(None)
    )


@lru_cache(maxsize=64)
def _delete_many_sql(table: str, key: tuple[str, ...]) -> bytes:
    matching = sql.SQL(" AND ").join(
        sql.SQL("_t.{0} = _u.{0}").format(sql.Identifier(c)) for c in key
    )
    return (
        sql.SQL("DELETE FROM {} AS _t USING (SELECT * FROM {} LIMIT %s) AS _u WHERE {}")
        .format(table_name(table), _as_table(table), matching)
        .as_bytes(None)
    )
