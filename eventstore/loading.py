"""What loading an aggregate reads: its newest usable snapshot and the events after it, at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, Final

from psycopg_pool import AsyncConnectionPool

from acci.eventstore import validation
from acci.eventstore.errors import translated
from acci.eventstore.tenant_scope import scoped

# One statement, one round trip: the snapshot row (event_type NULL) first, then only the columns
# a fold needs of each later event. schema_version 0 matches no snapshot (a load without one).
# The JSON comes as text: the registry hands it to pydantic whole (EventRegistry.decode_json),
# which costs a third less than the driver's json.loads followed by validation of the dict.
#
# Why each part of the UNION has its own ORDER BY: a top-level ORDER BY over a UNION ALL whose
# parts have WHERE clauses is planned as Append + Sort (PostgreSQL plans such parts as separate
# subqueries with no wanted order, so their index order is thrown away), and a 100,000-event
# stream then sorted every row again, spilling 13 MB to disk. Ordered parts let the planner
# merge them (Merge Append): the events come straight from the stream-key index scan, already
# in sequence order, and the one-row snapshot part is "sorted" for free. The outer ORDER BY is
# what guarantees the order; the snapshot's sequence number is below every event's, so it
# comes first.
LOAD: Final = """
WITH snapshot AS MATERIALIZED (
    SELECT sequence_number, state FROM snapshots.aggregate_snapshots
     WHERE tenant_id = %(tenant_id)s AND aggregate_id = %(aggregate_id)s
       AND aggregate_type = %(aggregate_type)s AND schema_version = %(schema_version)s
       AND sequence_number <= %(to_version)s
     ORDER BY sequence_number DESC LIMIT 1
)
SELECT sequence_number, event_type, event_version, data FROM (
    (SELECT sequence_number, NULL::text AS event_type, NULL::integer AS event_version,
            state::text AS data
       FROM snapshot)
    UNION ALL
    (SELECT sequence_number, event_type, event_version, data::text
       FROM event_store.events
      WHERE tenant_id = %(tenant_id)s AND aggregate_id = %(aggregate_id)s
        AND aggregate_type = %(aggregate_type)s
        AND sequence_number > coalesce((SELECT sequence_number FROM snapshot), 0)
        AND sequence_number <= %(to_version)s
        AND (%(until)s::timestamptz IS NULL OR created_at <= %(until)s::timestamptz)
      ORDER BY sequence_number)
) AS stream
ORDER BY sequence_number
"""

StoredEvent = tuple[int, str, int, str]
"""One event as a load reads it: (sequence_number, event_type, event_version, JSON text)."""


@dataclass(frozen=True, slots=True)
class StreamTail:
    """A stream from its newest usable snapshot on: the snapshot (if any) and the later events.

    The rows are kept as the driver returned them: a load folds them one by one, so a long
    stream is never copied into a second list (nor decoded into a third).
    """

    snapshot_version: int
    snapshot_state: dict[str, Any] | None
    # Every row the load read; the events are those from ``first_event`` on.
    rows: list[Any]
    first_event: int

    def events(self) -> Iterator[StoredEvent]:
        """The events after the snapshot, in stream order, as stored (not decoded, not upcast)."""
        return islice(self.rows, self.first_event, None)


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
    with translated():
        async with scoped(pool, tenant_id) as conn:
            cur = await conn.execute(LOAD, params)
            rows = await cur.fetchall()
    if rows and rows[0][1] is None:  # no event has a NULL type: the snapshot row
        version, _, _, state = rows[0]
        return StreamTail(int(version), json.loads(state), rows, 1)
    return StreamTail(0, None, rows, 0)
