"""The set-based plan of a batch: a few statements with the effect of its changes in order.

Rows are independent, so only each row's own changes (same table and key) keep their order:
a row's consecutive changes are merged where exact (``merging.py``), and layer n holds every
row's n-th merged change. A layer goes out as one statement per table for its updates and one
per shape (table, kind, columns) for its upserts and deletes, each with its rows as one JSON
parameter (``set_statements.py``); layer n+1 follows layer n, so a row's changes keep their
order and no row appears twice in one statement.

Where the rows might not be independent (see ``shapes.py``), where a table has keys of two
shapes (the same row could be named two ways), where a table is not in the catalog, or where a
value cannot be carried in JSON at all, the batch goes one statement per change, in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncCursor

from acci.readmodels.changes.change import (
    SCHEMA,
    Change,
    MissingRowError,
    Update,
    renamed,
    statement_bytes,
)
from acci.readmodels.changes.merging import Net
from acci.readmodels.changes.set_statements import delete_many, update_many, upsert_many
from acci.readmodels.changes.shapes import shape_of
from acci.readmodels.changes.table_facts import TableFacts


@dataclass(slots=True)
class Batch:
    """One statement, the table it changes, and the nets (rows) it changes there."""

    statement: tuple[Any, Any]
    table: str
    nets: list[Net]

    @property
    def prepare(self) -> bool | None:
        """False for a join of the records with the table: planned for each batch, with the
        table's size as it is now (a plan prepared while a table was small would go on scanning
        all of it once it has grown, as it does while a projection rebuilds from scratch)."""
        return False if self.nets[0].kind in ("update", "delete") else None

    @property
    def checks_rows(self) -> bool:
        """Whether ``check`` must see the statement's result (it has updates)."""
        kind = self.nets[0].kind
        return kind == "update" or (kind == "raw" and isinstance(self.nets[0].change, Update))

    async def check(self, cur: AsyncCursor[Any]) -> None:
        """Raise ``MissingRowError`` for the first update that found no row."""
        if self.nets[0].kind == "raw":
            missing = [self.nets[0]] if cur.rowcount == 0 else []
        else:
            found = {row[0] for row in await cur.fetchall()}
            missing = [n for i, n in enumerate(self.nets, start=1) if i not in found]
        if missing:
            key = dict(missing[0].change.key)
            raise MissingRowError(f"no row in {SCHEMA}.{self.table} with key {key} to update")


def plan(
    changes: Sequence[Change], tables: Mapping[str, TableFacts], names: Mapping[str, str]
) -> list[Batch]:
    """The statements to send, in order: set-based where exact, else one per change.

    ``tables`` holds the facts of each table the changes name (where the catalog has it), and
    ``names`` the table each stands for (its version's): the changes keep the names their
    projection gave them, and only the statements use the tables' own.
    """
    layers = _layers(changes, tables)
    if layers is not None:
        try:
            return [batch for layer in layers for batch in _batches(layer, tables, names)]
        except (TypeError, ValueError):
            pass  # a value JSON cannot carry: one by one, failing as that fails
    return [_alone(Net.raw(change), names) for change in changes]


def _alone(net: Net, names: Mapping[str, str]) -> Batch:
    """The net's change as its own statement."""
    table = names[net.change.table]
    return Batch(statement_bytes(renamed(net.change, table)), table, [net])


def _layers(changes: Sequence[Change], tables: Mapping[str, TableFacts]) -> list[list[Net]] | None:
    """Each row's changes merged where exact; layer n holds every row's n-th statement.

    None: the changes must go one by one, in order.
    """
    rows: dict[tuple[Any, ...], list[Net]] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for change in changes:
        table = tables.get(change.table)
        if table is None:
            return None
        shape = shape_of(table, change)
        if shape.one_by_one or keys.setdefault(change.table, shape.row_key) != shape.row_key:
            return None
        try:
            segments = rows.setdefault((change.table, shape.row(change.key)), [])
        except TypeError:
            return None  # an unhashable key value
        net = Net.of(change, shape)
        if not (segments and segments[-1].merge(net, table)):
            segments.append(net)
    depth = max(len(segments) for segments in rows.values())
    if depth == 1:
        return [[segments[0] for segments in rows.values()]]
    return [[s[n] for s in rows.values() if n < len(s)] for n in range(depth)]


def _batches(
    layer: list[Net], tables: Mapping[str, TableFacts], names: Mapping[str, str]
) -> list[Batch]:
    """The layer's statements: one per table for its updates (each row setting, adding to or
    taking from only its own columns), one per shape for upserts and deletes, and each raw
    change's own."""
    groups: dict[tuple[Any, ...], list[Net]] = {}
    out: list[Batch] = []
    for net in layer:
        if net.kind == "raw" or net.shape is None:
            out.append(_alone(net, names))
            continue
        group: tuple[Any, ...] = (net.change.table, net.kind, net.shape.row_key)
        if net.kind == "upsert":
            group += (net.columns,)
        groups.setdefault(group, []).append(net)
    for (table, kind, key, *shape), nets in groups.items():
        name = names[table]
        if kind == "update":
            query = update_many(tables[table], name, key, nets)
        elif kind == "upsert":
            query = upsert_many(tables[table], name, key, shape[0], nets)
        else:
            query = delete_many(tables[table], name, key, nets)
        out.append(Batch(query, name, nets))
    return out
