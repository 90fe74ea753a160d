"""What the snapshot job reads and prunes: streams far past their newest snapshot, or holding
more snapshots than it keeps, page by page.

Streams are visited in the stream key's order (tenant, aggregate id, aggregate type), a page
at a time after a cursor, so a job can stop anywhere and resume where it left off. A page's
heads come from the stream key index in order (a grouped index scan that stops after ``scan``
streams), each beside its newest snapshot of the aggregate type's current state schema and how
many snapshots it has (any schema: the command path's policy writes them on hot streams, which
are then never far behind, and the job prunes them all the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from psycopg_pool import AsyncConnectionPool

from acci.eventstore.errors import EventStoreValidationError, translated

StreamKey = tuple[str, str, str]
"""(tenant id, aggregate id, aggregate type): a stream's place in the scan's order."""

START: Final[StreamKey] = ("", "", "")

_HEADS: Final = """
WITH heads AS (
    SELECT tenant_id, aggregate_id, aggregate_type, max(sequence_number) AS head
      FROM event_store.events
     WHERE (tenant_id, aggregate_id, aggregate_type) > (%(tenant)s, %(aggregate)s, %(type)s)
     GROUP BY tenant_id, aggregate_id, aggregate_type
     ORDER BY tenant_id, aggregate_id, aggregate_type
     LIMIT %(scan)s
)
SELECT h.tenant_id, h.aggregate_id, h.aggregate_type, h.head, c.schema_version,
       coalesce(s.snapped, 0), s.kept
  FROM heads h
  LEFT JOIN unnest(%(types)s::text[], %(schemas)s::int[]) AS c(aggregate_type, schema_version)
    ON c.aggregate_type = h.aggregate_type
 CROSS JOIN LATERAL (
    SELECT max(sequence_number) FILTER (WHERE schema_version = c.schema_version) AS snapped,
           count(*) AS kept
      FROM snapshots.aggregate_snapshots
     WHERE tenant_id = h.tenant_id AND aggregate_id = h.aggregate_id
       AND aggregate_type = h.aggregate_type
 ) AS s
 ORDER BY h.tenant_id, h.aggregate_id, h.aggregate_type
"""

# Every snapshot of the stream but its newest ``keep`` (any state schema: an old schema's are
# never read again once a newer one is written).
_PRUNE: Final = """
DELETE FROM snapshots.aggregate_snapshots
 WHERE tenant_id = %(tenant)s AND aggregate_id = %(aggregate)s AND aggregate_type = %(type)s
   AND snapshot_id NOT IN (
       SELECT snapshot_id FROM snapshots.aggregate_snapshots
        WHERE tenant_id = %(tenant)s AND aggregate_id = %(aggregate)s
          AND aggregate_type = %(type)s
        ORDER BY sequence_number DESC, created_at DESC LIMIT %(keep)s)
"""


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A stream's head, its newest usable snapshot's version (0: none) and how many snapshots
    it has."""

    key: StreamKey
    head: int
    snapshot: int
    snapshots: int

    @property
    def behind(self) -> int:
        """Events a load folds past the newest snapshot."""
        return self.head - self.snapshot


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the scan: its streams (those of known aggregate types) and where it ended
    (None: the last page)."""

    streams: list[StreamPosition]
    next_after: StreamKey | None
    scanned: int  # streams of the page, of any type


async def scan_page(
    pool: AsyncConnectionPool,
    after: StreamKey,
    *,
    scan: int,
    schemas: Mapping[str, int],
) -> Page:
    """Up to ``scan`` streams after ``after``; ``schemas``: each aggregate type's current state
    schema version (streams of other types are passed over)."""
    if not 1 <= scan <= 100_000:
        raise EventStoreValidationError(f"scan must be 1..100000, got {scan}")
    tenant, aggregate, kind = after
    params = {
        "tenant": tenant,
        "aggregate": aggregate,
        "type": kind,
        "scan": scan,
        "types": list(schemas),
        "schemas": list(schemas.values()),
    }
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(_HEADS, params)
            rows = await cur.fetchall()
    streams = [
        StreamPosition((t, a, k), int(head), int(snapped), int(kept))
        for t, a, k, head, schema, snapped, kept in rows
        if schema is not None  # a type no installed application declares: not ours to load
    ]
    last = (str(rows[-1][0]), str(rows[-1][1]), str(rows[-1][2])) if len(rows) == scan else None
    return Page(streams, last, len(rows))


async def prune(pool: AsyncConnectionPool, key: StreamKey, *, keep: int) -> int:
    """Delete the stream's snapshots but the newest ``keep``; returns how many went."""
    if keep < 1:
        raise EventStoreValidationError(f"keep must be at least 1, got {keep}")
    tenant, aggregate, kind = key
    params = {"tenant": tenant, "aggregate": aggregate, "type": kind, "keep": keep}
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(_PRUNE, params)
            return cur.rowcount
