"""What a read-model table allows, read from PostgreSQL's catalog once per process and table.

The planner batches a table's changes only as far as the table lets it prove that the batch
fails where the changes one by one would: whether its rows change alone (no trigger, rule,
foreign key, exclusion constraint or inheritance), each column's type and NOT NULL, the columns
of each CHECK constraint, and its unique indexes. The catalog, not the read models' declared
row types, is the source: it is what the database enforces, including what no row type says
(the CHECKs on ``status``) and tables no row type declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import AsyncConnection

from acci.readmodels.changes.change import SCHEMA
from acci.readmodels.changes.type_rules import Check, carrier, step_carrier

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


@dataclass(frozen=True, slots=True)
class TableFacts:
    """What the catalog says about a read-model table, as far as batching its changes goes."""

    # No trigger, rule, foreign key, exclusion constraint or inheritance: a row changes alone.
    independent_rows: bool
    types: Mapping[str, str]  # column -> format_type()
    not_null: frozenset[str]
    checks: tuple[frozenset[str], ...]  # the columns of each CHECK constraint
    unique: tuple[frozenset[str] | None, ...]  # each unique index's columns (None: expression)
    carried: Mapping[str, Check]  # column -> whether JSON carries a value as a parameter would
    steps: Mapping[str, Check]  # column -> whether JSON carries an increment of it
    # The planner's shapes.Shape of each change signature met, made on first use.
    shapes: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False)


# By (host, port, database, table): read once per process.
_FACTS: dict[tuple[str, int, str, str], TableFacts] = {}


async def read_tables(conn: AsyncConnection[Any], names: set[str]) -> dict[str, TableFacts]:
    """The facts of the named tables that exist (the first time, one catalog query)."""
    info = conn.info
    where = (str(info.host), int(info.port), str(info.dbname))
    found = {n: t for n in names if (t := _FACTS.get((*where, n))) is not None}
    missing = sorted(names - found.keys())
    if missing:
        cur = await conn.execute(_CATALOG, (missing, SCHEMA))
        for name, independent, columns, checks, unique in await cur.fetchall():
            if columns is None:
                continue  # no such table: its changes go one by one, and fail as they do
            found[name] = _FACTS[(*where, name)] = _facts(independent, columns, checks, unique)
    return found


def _facts(
    independent: bool | None,
    columns: list[list[Any]],
    checks: list[list[str]] | None,
    unique: list[list[str] | None] | None,
) -> TableFacts:
    types = {c: t for c, t, _ in columns}
    carried = {c: carrier(t) for c, t in types.items()}
    return TableFacts(
        independent_rows=bool(independent),
        types=types,
        not_null=frozenset(c for c, _, required in columns if required),
        checks=tuple(frozenset(c) for c in checks or ()),
        unique=tuple(None if u is None else frozenset(u) for u in unique or ()),
        carried=carried,
        steps={c: step_carrier(t, carried[c]) for c, t in types.items()},
    )
