"""Is a rebuilt version right? Its tables compared, row by row, with another version's and with a
fold of the event store.

A comparison counts each table's rows and checksums them (an MD5 over every row's MD5, in
order, of the columns the row type declares), and when they differ lists the first rows that do
(by key, with both sides). The fold applies the projection's changes for every event up to the
rebuild's position one statement at a time, each change's own ``statement`` (what a change
means, ``changes/change.py``), into unlogged scratch copies of the version's tables: the
batching, pipelining and checkpointing of the engine are what it checks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.records import START, Position, RecordedEvent
from acci.eventstore.store import EventStore
from acci.readmodels.changes import Change, Update
from acci.readmodels.changes.change import SCHEMA, statement_bytes
from acci.readmodels.db import applying_changes, translated
from acci.readmodels.projections import Projection
from acci.readmodels.read_model import ReadModel
from acci.readmodels.reports import describe
from acci.readmodels.versioned import physical_table, to_version

MAX_DIFFERENCES: Final = 10
FOLD_SUFFIX: Final = "_fold"
_FOLD_PAGE: Final = 2_000


@dataclass(frozen=True, slots=True)
class RowDifference:
    """A row that is not the same on both sides: its key, and each side's row (None: none)."""

    table: str
    key: dict[str, Any]
    expected: dict[str, Any] | None
    found: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class TableComparison:
    """One table on both sides: row counts, checksums, and the first rows that differ."""

    table: str
    expected_rows: int
    found_rows: int
    expected_checksum: str
    found_checksum: str
    differences: list[RowDifference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return (self.expected_rows, self.expected_checksum) == (
            self.found_rows,
            self.found_checksum,
        )


class FoldError(Exception):
    """The fold could not apply an event the rebuild applied (the message names it)."""


def columns(model: ReadModel, table: str) -> tuple[list[str], list[str]]:
    """The columns the row type of ``table`` declares, and its key columns."""
    row = next(r for r in model.rows if getattr(r, "__tablename__", None) == table)
    sa_table: Any = getattr(row, "__table__")  # noqa: B009  (SQLModel adds it to table rows)
    return [c.name for c in sa_table.columns], [c.name for c in sa_table.primary_key.columns]


async def compare(
    conn: AsyncConnection[Any],
    model: ReadModel,
    expected: Mapping[str, str],
    found: Mapping[str, str],
    *,
    tenant: str | None = None,
) -> list[TableComparison]:
    """Each table of ``model``: ``expected[table]`` against ``found[table]`` (physical names),
    all rows or ``tenant``'s."""
    out = []
    only = _only(tenant)
    for table in model.tables:
        cols, key = columns(model, table)
        left, right = expected[table], found[table]
        e_rows, e_sum = await _digest(conn, left, cols, only, tenant)
        f_rows, f_sum = await _digest(conn, right, cols, only, tenant)
        comparison = TableComparison(table, e_rows, f_rows, e_sum, f_sum)
        if not comparison.equal:
            comparison.differences.extend(
                await _differences(conn, table, (left, right), cols, key, only, tenant)
            )
        out.append(comparison)
    return out


def _only(tenant: str | None) -> sql.Composable:
    return sql.SQL("TRUE") if tenant is None else sql.SQL("tenant_id = %(tenant)s")


def _row_hash(cols: Sequence[str]) -> sql.Composed:
    return sql.SQL("md5(ROW({})::text)").format(sql.SQL(", ").join(map(sql.Identifier, cols)))


async def _digest(
    conn: AsyncConnection[Any],
    table: str,
    cols: Sequence[str],
    only: sql.Composable,
    tenant: str | None,
) -> tuple[int, str]:
    query = sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '')"
        " FROM (SELECT {} AS h FROM {} WHERE {}) AS rows"
    ).format(_row_hash(cols), sql.Identifier(SCHEMA, table), only)
    cur = await conn.execute(query, {"tenant": tenant})
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


_ONLY_IN: Final = sql.SQL(
    "SELECT to_jsonb(x) FROM {a} AS x WHERE {only} AND NOT EXISTS (SELECT 1 FROM {b} AS y"
    " WHERE {hy} = {hx}) LIMIT %(limit)s"
)


async def _differences(
    conn: AsyncConnection[Any],
    table: str,
    sides_tables: tuple[str, str],
    cols: Sequence[str],
    key: Sequence[str],
    only: sql.Composable,
    tenant: str | None,
) -> list[RowDifference]:
    """The first ``MAX_DIFFERENCES`` keys whose rows differ, with both sides."""
    hx = sql.SQL("md5(ROW({})::text)").format(
        sql.SQL(", ").join(sql.SQL("x.{}").format(sql.Identifier(c)) for c in cols)
    )
    hy = sql.SQL("md5(ROW({})::text)").format(
        sql.SQL(", ").join(sql.SQL("y.{}").format(sql.Identifier(c)) for c in cols)
    )
    sides: list[dict[tuple[Any, ...], dict[str, Any]]] = []
    expected, found = sides_tables
    for a, b in ((expected, found), (found, expected)):
        query = _ONLY_IN.format(
            a=sql.Identifier(SCHEMA, a), b=sql.Identifier(SCHEMA, b), hx=hx, hy=hy, only=only
        )
        cur = await conn.execute(query, {"limit": MAX_DIFFERENCES, "tenant": tenant})
        rows = [{c: r[c] for c in cols if c in r} for (r,) in await cur.fetchall()]
        sides.append({tuple(r.get(k) for k in key): r for r in rows})
    keys = sorted({*sides[0], *sides[1]}, key=repr)[:MAX_DIFFERENCES]
    return [
        RowDifference(table, dict(zip(key, k, strict=True)), sides[0].get(k), sides[1].get(k))
        for k in keys
    ]


# -- the fold ---------------------------------------------------------------------------------


def fold_tables(model: ReadModel, version: int, suffix: str = FOLD_SUFFIX) -> dict[str, str]:
    """The scratch tables a fold of version ``version`` writes."""
    return {t: physical_table(t, version) + suffix for t in model.tables}


async def drop_fold(
    pool: AsyncConnectionPool, model: ReadModel, version: int, suffix: str = FOLD_SUFFIX
) -> None:
    """Drop a fold's scratch tables, if there are any."""
    with translated():
        async with pool.connection() as conn, conn.transaction():
            for name in fold_tables(model, version, suffix).values():
                await conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCHEMA, name))
                )


async def fold(
    store: EventStore,
    model: ReadModel,
    projection: Projection,
    version: int,
    *,
    until: Position,
    skipped: set[uuid.UUID],
    suffix: str = FOLD_SUFFIX,
    tenant: str | None = None,
    after: Position = START,
) -> int:
    """Fold every event (of ``tenant``, or all) after ``after`` and up to ``until`` (but
    ``skipped``: parked ones) into scratch copies of version ``version``'s tables (fresh ones
    when ``after`` is the start); returns how many events it read."""
    pool = store.pool
    tables = fold_tables(model, version, suffix)
    if after == START:
        await drop_fold(pool, model, version, suffix)
        with translated():
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(model.create_statement(version, suffix=suffix))
                for name in tables.values():
                    # Scratch: not worth the WAL (a crash drops it; the fold starts over).
                    await conn.execute(
                        sql.SQL("ALTER TABLE {} SET UNLOGGED").format(sql.Identifier(SCHEMA, name))
                    )
    position, read = after, 0
    while position < until:
        with translated():
            events = await store.read_all(position, limit=_FOLD_PAGE, tenant_id=tenant)
        events = [e for e in events if e.position <= until]
        if not events:
            break
        read += len(events)
        page: list[tuple[RecordedEvent, Change]] = []
        for event in events:
            if (damage := event.damage()) is not None and event.event_id not in skipped:
                raise FoldError(f"event {event.event_id} cannot be read: {damage}")
            if event.event_id in skipped or not event.readable:
                # Parked, or a shredded tenant's (no handler can read it): the live projection
                # passed over it too (readmodels/batch.py).
                continue
            try:
                changes = [to_version(c, tables) for c in projection.handle_event(event)]
            except Exception as e:
                raise FoldError(
                    f"event {event.event_id} ({event.event_type}) at {event.position}"
                    f" fails in the fold: {describe(e)}"
                ) from e
            page.extend((event, change) for change in changes)
        # A connection per page, not held across the read (which takes one of its own).
        async with pool.connection() as conn:
            await _apply_one_by_one(conn, page)
        position = events[-1].position
    return read


async def _apply_one_by_one(conn: AsyncConnection[Any], page: list[tuple[Any, Change]]) -> None:
    checked: list[tuple[Any, Change, AsyncCursor[Any]]] = []
    try:
        with applying_changes():
            async with conn.transaction(), conn.pipeline():
                for event, change in page:
                    cur = conn.cursor()
                    await cur.execute(*statement_bytes(change))
                    if isinstance(change, Update):
                        checked.append((event, change, cur))
    except Exception as e:
        raise FoldError(f"the fold's changes were refused: {describe(e)}") from e
    for event, change, cur in checked:
        if cur.rowcount != 1:
            raise FoldError(
                f"event {event.event_id} ({event.event_type}) updates a row of"
                f" {change.table} that the fold does not have: {dict(change.key)}"
            )
