"""Rewriting stored events to their type's current version, a batch at a time (the only place
that changes a stored event).

Rows are visited in primary-key order, ``(tenant_id, transaction_id, global_position)``, a page
of ``scan`` rows after a cursor, so a run can stop anywhere and resume after the last page it
committed. Each row of the page stored below its type's current version is upcast
(``registry.upcast``), validated against the event's model (``registry.decode``) and updated in
place: data and event_version change; event id, positions, sequence number, metadata and
created_at stay. A page is one transaction, together with the counts it adds to the run's row(s)
in ``event_store.event_migrations``; an event that does not validate stops the page before
anything of it is written (``EventMigrationError``).

The update only touches a row still at the version the page read (``WHERE event_version =
old``): a page run twice, or by two runs at once, rewrites each event once and counts it once.

Run it once every process writes the current versions (ACCI refuses to append an older one):
rows appended later by a process still running older code, behind the cursor, are not revisited
(they stay readable: every read path upcasts).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.domain.errors import CommandError
from acci.domain.registry import EventRegistry
from acci.eventstore.cipher import is_sealed
from acci.eventstore.errors import (
    EventStoreValidationError,
    UnsupportedEventTypeError,
    translated,
)

Cursor = tuple[str, int, int]
"""(tenant id, transaction id, global position): a row's place in the primary key's order."""

START: Final[Cursor] = ("", 0, 0)

# One page in primary-key order. Only the rows stored below their type's current version
# (``currents``: {event type: current version}, the types the run migrates) bring their data.
_PAGE_TEXT: Final = """
SELECT tenant_id, transaction_id, global_position, event_id, event_type, event_version,
       CASE WHEN event_version < coalesce((%(currents)s::jsonb ->> event_type)::int, 0)
            THEN data END
  FROM event_store.events
 WHERE (tenant_id, transaction_id, global_position) > (%(tenant)s, %(tx)s::text::xid8, %(gp)s)
   {only_tenant}
 ORDER BY tenant_id, transaction_id, global_position
 LIMIT %(scan)s
"""
# By whether the run is limited to one tenant (then the scan is that tenant's index range).
_PAGE: Final = {
    only: sql.SQL(_PAGE_TEXT).format(
        only_tenant=sql.SQL("AND tenant_id = %(only)s" if only else "")
    )
    for only in (False, True)
}

# Why an UPDATE needs neither the writer lock nor a place in the horizon (global_order.py):
# readers of the global order stop at the oldest open transaction that may still *insert*
# events, and order rows by their transaction_id *column*. An UPDATE inserts no event and leaves
# that column (and global_position) as they were, so no row changes its place in the order and
# no reader can pass over anything because of this transaction: a reader sees the row's old
# version before the commit and its new one after, and both read as the same event (every read
# path upcasts the old one to exactly the data written here). The writer-lock trigger of
# migration 005 fires on INSERT only, so this transaction is left out of the horizon, as it
# should be, and holds no reader back while its batch runs.
_UPDATE: Final = """
UPDATE event_store.events AS e
   SET data = u.data, event_version = u.to_version
  FROM jsonb_to_recordset(%(rows)s::jsonb)
         AS u(tenant_id text, transaction_id text, global_position bigint, event_id uuid,
              from_version integer, to_version integer, data jsonb)
 WHERE e.tenant_id = u.tenant_id AND e.transaction_id = u.transaction_id::xid8
   AND e.global_position = u.global_position AND e.event_id = u.event_id
   AND e.event_version = u.from_version
RETURNING e.event_type, u.from_version, u.to_version
"""

_RECORD: Final = """
INSERT INTO event_store.event_migrations AS m
       (migration_id, workflow_id, tenant_filter, type_filter, event_type, from_version,
        to_version, count, started_at)
VALUES (%(migration_id)s, %(workflow_id)s, %(tenant)s, %(types)s, %(event_type)s,
        %(from_version)s, %(to_version)s, %(count)s, %(started_at)s)
ON CONFLICT (migration_id, event_type, from_version, to_version)
DO UPDATE SET count = m.count + excluded.count
"""

_FINISH: Final = """
UPDATE event_store.event_migrations SET finished_at = now()
 WHERE migration_id = %s AND finished_at IS NULL
"""


class EventMigrationError(EventStoreValidationError):
    """A stored event whose upcast data its current model refuses; nothing of its batch was
    written."""

    def __init__(self, row: StoredRow, problem: str) -> None:
        super().__init__(
            f"event {row.event_id} ({row.event_type} version {row.event_version}, tenant"
            f" {row.tenant_id}) cannot be migrated: {problem}"
        )
        self.row = row
        self.problem = problem


@dataclass(frozen=True, slots=True)
class MigrationRun:
    """What a run migrates (tenant and types; None: all) and how it is recorded."""

    migration_id: str
    workflow_id: str
    started_at: datetime
    tenant_id: str | None = None
    event_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One stored event as a page read it (``data`` only if it needs migrating)."""

    tenant_id: str
    transaction_id: int
    global_position: int
    event_id: uuid.UUID
    event_type: str
    event_version: int
    data: dict[str, Any] | None

    @property
    def cursor(self) -> Cursor:
        return (self.tenant_id, self.transaction_id, self.global_position)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """One page: rows looked at, events rewritten (per step), where it ended (None: the last)."""

    next_after: Cursor | None
    scanned: int
    steps: Mapping[tuple[str, int, int], int]

    @property
    def migrated(self) -> int:
        return sum(self.steps.values())


def current_versions(registry: EventRegistry, event_types: Sequence[str] = ()) -> dict[str, int]:
    """{event type: current version} of ``event_types`` (default: every registered type) that
    have older versions; an unknown type named is a typed error."""
    unknown = sorted(t for t in event_types if not registry.is_known(t))
    if unknown:
        raise UnsupportedEventTypeError(f"unknown event type(s): {', '.join(unknown)}")
    names = event_types or sorted(registry.event_types())
    return {t: v for t in names if (v := registry.current_version(t)) > 1}


async def migrate_batch(
    pool: AsyncConnectionPool,
    registry: EventRegistry,
    run: MigrationRun,
    *,
    after: Cursor | None,
    scan: int,
) -> BatchOutcome:
    """Migrate the stored events of the next ``scan`` rows after ``after``, in one transaction
    with the run's record; the last page also marks the run finished."""
    if not 1 <= scan <= 100_000:
        raise EventStoreValidationError(f"scan must be 1..100000, got {scan}")
    currents = current_versions(registry, run.event_types)
    with translated():
        async with pool.connection() as conn, conn.transaction():
            rows = await _page(conn, run.tenant_id, after, scan, currents)
            # Sealed data is not rewritten in place (it would need its tenant's key, and a
            # shredded tenant's cannot be): every read path upcasts it once opened.
            # Data of {} is an event to rewrite too: only a current row's data is NULL (_PAGE).
            rewrites = [
                _rewrite(registry, r) for r in rows if r.data is not None and not is_sealed(r.data)
            ]
            steps = await _update(conn, rewrites) if rewrites else Counter()
            await _record(conn, run, steps)
            next_after = rows[-1].cursor if len(rows) == scan else None
            if next_after is None:
                await conn.execute(_FINISH, (run.migration_id,))
    return BatchOutcome(next_after, len(rows), dict(steps))


async def _page(
    conn: psycopg.AsyncConnection[Any],
    tenant_id: str | None,
    after: Cursor | None,
    scan: int,
    currents: Mapping[str, int],
) -> list[StoredRow]:
    start = after or ((tenant_id, 0, 0) if tenant_id is not None else START)
    params = {
        "tenant": start[0],
        "tx": str(start[1]),
        "gp": start[2],
        "only": tenant_id,
        "scan": scan,
        "currents": json.dumps(dict(currents)),
    }
    cur = await conn.execute(_PAGE[tenant_id is not None], params)
    return [StoredRow(*row) for row in await cur.fetchall()]


def _rewrite(registry: EventRegistry, row: StoredRow) -> dict[str, Any]:
    """The row's update: its data upcast, once its model has accepted it."""
    try:
        version, data = registry.upcast(row.event_type, row.event_version, row.data or {})
        registry.decode(row.event_type, version, data)
    except CommandError as e:  # the registry's own errors: invalid, or no upcaster
        raise EventMigrationError(row, str(e)) from e
    # The upcast data itself, not the model's dump: readers got exactly this before the
    # migration (every read path upcasts), so nothing downstream can tell the two apart.
    return {
        "tenant_id": row.tenant_id,
        "transaction_id": str(row.transaction_id),
        "global_position": row.global_position,
        "event_id": str(row.event_id),
        "from_version": row.event_version,
        "to_version": version,
        "data": data,
    }


async def _update(
    conn: psycopg.AsyncConnection[Any], rewrites: list[dict[str, Any]]
) -> Counter[tuple[str, int, int]]:
    cur = await conn.execute(_UPDATE, {"rows": json.dumps(rewrites)})
    return Counter((str(t), int(f), int(v)) for t, f, v in await cur.fetchall())


async def _record(
    conn: psycopg.AsyncConnection[Any], run: MigrationRun, steps: Mapping[tuple[str, int, int], int]
) -> None:
    for (event_type, from_version, to_version), count in sorted(steps.items()):
        await conn.execute(
            _RECORD,
            {
                "migration_id": run.migration_id,
                "workflow_id": run.workflow_id,
                "tenant": run.tenant_id,
                "types": list(run.event_types) or None,
                "event_type": event_type,
                "from_version": from_version,
                "to_version": to_version,
                "count": count,
                "started_at": run.started_at,
            },
        )


async def recorded(pool: AsyncConnectionPool, migration_id: str) -> list[dict[str, Any]]:
    """The run's record: one dict per step (event type, from/to version, count, times)."""
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT event_type, from_version, to_version, count, started_at, finished_at,"
                " workflow_id, tenant_filter, type_filter FROM event_store.event_migrations"
                " WHERE migration_id = %s ORDER BY event_type, from_version",
                (migration_id,),
            )
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
