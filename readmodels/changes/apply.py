"""``apply_changes``: a batch of changes sent in one round trip, and checked.

The one entry point of the package's machinery: it reads what the tables allow
(``table_facts.py``), plans the statements (``planner.py``), sends them in one pipeline and
then checks that every update found its row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import AsyncConnection, AsyncCursor

from acci.readmodels.changes.change import Change
from acci.readmodels.changes.planner import Batch, plan
from acci.readmodels.changes.table_facts import read_tables


async def apply_changes(
    conn: AsyncConnection[Any],
    changes: Sequence[Change],
    tables: Mapping[str, str] | None = None,
) -> None:
    """Run the changes on ``conn`` (inside the caller's transaction), in one round trip.

    ``tables`` names the table each change's table stands for (a read model's version's,
    ``readmodels/versioned.py``); a table not there is the table named.

    The effect is that of running each change's ``statement`` in order (``planner.py`` says how
    a batch is regrouped). Raises ``MissingRowError`` when an ``Update`` found no row, and
    psycopg's error when the database refused a change; either way the caller's transaction
    must be rolled back. (The first time a table is met, reading what it allows from the
    catalog costs a round trip more.)
    """
    if not changes:
        return
    tables = tables or {}
    names = {table: tables.get(table, table) for table in {change.table for change in changes}}
    facts = await read_tables(conn, set(names.values()))
    batches = plan(changes, {t: facts[n] for t, n in names.items() if n in facts}, names)
    checked: list[tuple[Batch, AsyncCursor[Any]]] = []
    async with conn.pipeline():
        for batch in batches:
            cur = conn.cursor()
            await cur.execute(*batch.statement, prepare=batch.prepare)
            if batch.checks_rows:
                checked.append((batch, cur))
    for batch, cur in checked:
        await batch.check(cur)
