"""What loading an aggregate reads: its newest usable snapshot and the events after it, at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from eventstore import validation
from eventstore.errors import translate

# One statement, one round trip: the snapshot row (kind 0) first, then only the columns a fold
# needs of each later event (kind 1). schema_version 0 matches no snapshot (a load without one).
_LOAD: Final = """
WITH snapshot AS (
    SELECT sequence_number, aggregate_type, state FROM snapshots.aggregate_snapshots
     WHERE tenant_id = %(tenant_id)s AND aggregate_id = %(aggregate_id)s
       AND aggregate_type = %(aggregate_type)s AND schema_version = %(schema_version)s
       AND sequence_number <= %(to_version)s
     ORDER BY sequence_number DESC LIMIT 1
)
SELECT 0 AS kind, sequence_number, aggregate_type, NULL::text, NULL::integer, state
  FROM snapshot
UNION ALL
SELECT 1, sequence_number, aggregate_type, event_type, event_version, data
  FROM event_store.events
 WHERE tenant_id = %(tenant_id)s AND aggregate_id = %(aggregate_id)s
   AND aggregate_type = %(aggregate_type)s
   AND sequence_number > coalesce((SELECT sequence_number FROM snapshot), 0)
   AND sequence_number <= %(to_version)s
   AND (%(until)s::timestamptz IS NULL OR created_at <= %(until)s::timestamptz)
ORDER BY kind, sequence_number
"""


@dataclass(frozen=True, slots=True)
class StreamTail:
    """A stream from its newest usable snapshot on: the snapshot (if any) and the later events."""

    snapshot_version: int
    snapshot_state: dict[str, Any] | None
    # (event_type, event_version, data) of each event after the snapshot, in stream order.
    events: list[tuple[str, int, dict[str, Any]]]


async def read_tail(
    pool: AsyncConnectionPool,
    tenant_id: str,
    aggregate_id: str,
    aggregate_type: str,
    *,
    schema_version: int | None,
    to_version: int | None = None,
    until: datetime | None = None,
) -> StreamTail:
    """The newest snapshot of ``schema_version`` at or below ``to_version``, and what follows."""
    validation.stream(tenant_id, aggregate_id, until=until)
    validation.type_name(aggregate_type, "aggregate type")
    params = {
        "tenant_id": tenant_id,
        "aggregate_id": aggregate_id,
        "aggregate_type": aggregate_type,
        "schema_version": schema_version or 0,
        "to_version": validation.MAX_VERSION if to_version is None else to_version,
        "until": until,
    }
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(_LOAD, params)
            rows = await cur.fetchall()
    except psycopg.Error as e:
        raise translate(e) from e
    snapshot_version, state = 0, None
    if rows and rows[0][0] == 0:
        _, snapshot_version, _, _, _, state = rows[0]
        rows = rows[1:]
    return StreamTail(
        snapshot_version=int(snapshot_version),
        snapshot_state=state,
        events=[(row[3], row[4], row[5]) for row in rows],
    )
