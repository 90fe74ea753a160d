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
from acci.eventstore.encryption import OFF, PayloadEncryption
from acci.eventstore.errors import translated
from acci.eventstore.snapshots import opened_state

# One statement, one round trip: the snapshot row (event_type NULL) first, then only the columns
# a fold needs of each later event. schema_version 0 matches no snapshot (a load without one).
# The JSON comes as text: the registry hands it to pydantic whole (EventRegistry.decode_json),
# which costs a third less than the driver's json.loads followed by validation of the dict.
#
# The statement scopes its own transaction to the tenant (row-level security, migration 012):
# `scope` sets acci.tenant_id, and each read is a LATERAL subquery of scope's row, so it runs
# after the setting (the policy's check is a one-time filter on scope's row). Were it ever to
# run first, the policy would see no tenant and return no row: a load fails closed, never shows
# another tenant. A separate set_config statement cost a pipelined round of its own: 1.4-1.8x a
# short load (bench/rls_bench.py).
#
# No ORDER BY over the whole: it made the events part sort every row again (a LATERAL join
# hides the index order from the planner; a 100,000-event stream spilled to disk). The order is
# that of the UNION ALL's parts (the snapshot's one row, then the events from the stream-key
# index scan, ordered within their subquery), and the fold checks it: every event's sequence
# number must follow the one before (eventstore/repository.py), so a misordered or gapped
# stream fails its load instead of folding wrongly.
#
# sealed_id is the event id of a sealed (encrypted) event only: its ciphertext is bound to it
# (eventstore/cipher.py). A clear event's is NULL, so a store without encryption reads no id.
LOAD: Final = """
WITH scope AS MATERIALIZED (
    SELECT set_config('acci.tenant_id', %(tenant_id)s, true) AS tenant_id
), snapshot AS MATERIALIZED (
    SELECT s.sequence_number, s.state FROM scope CROSS JOIN LATERAL (
        SELECT sequence_number, state FROM snapshots.aggregate_snapshots
         WHERE tenant_id = scope.tenant_id AND aggregate_id = %(aggregate_id)s
           AND aggregate_type = %(aggregate_type)s AND schema_version = %(schema_version)s
           AND sequence_number <= %(to_version)s
         ORDER BY sequence_number DESC LIMIT 1
    ) AS s
)
(SELECT sequence_number, NULL::text AS event_type, NULL::integer AS event_version,
        state::text AS data, NULL::text AS sealed_id
   FROM snapshot)
UNION ALL
(SELECT e.sequence_number, e.event_type, e.event_version, e.data::text,
        CASE WHEN e.data ? '$enc' THEN e.event_id::text END
   FROM scope CROSS JOIN LATERAL (
       SELECT sequence_number, event_type, event_version, data, event_id
         FROM event_store.events
        WHERE tenant_id = scope.tenant_id AND aggregate_id = %(aggregate_id)s
          AND aggregate_type = %(aggregate_type)s
          AND sequence_number > coalesce((SELECT sequence_number FROM snapshot), 0)
          AND sequence_number <= %(to_version)s
          AND (%(until)s::timestamptz IS NULL OR created_at <= %(until)s::timestamptz)
        ORDER BY sequence_number OFFSET 0
   ) AS e)
"""

StoredEvent = tuple[int, str, int, str, str | None]
"""One event as a load reads it: (sequence_number, event_type, event_version, JSON text, and
the event id if it was stored sealed; its text is then the opened data)."""


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
    encryption: PayloadEncryption = OFF,
) -> StreamTail:
    """The newest snapshot of ``schema_version`` at or below ``to_version``, and what follows;
    sealed payloads opened (``TenantKeyShreddedError`` for a shredded tenant's)."""
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
        async with pool.connection() as conn:  # the statement scopes itself to the tenant
            cur = await conn.execute(LOAD, params)
            rows = await cur.fetchall()
    first = 1 if rows and rows[0][1] is None else 0  # no event has a NULL type: the snapshot
    sealed = [i for i in range(first, len(rows)) if rows[i][4] is not None]
    if sealed:
        await _open_events(encryption, rows, sealed, tenant_id, aggregate_id)
    if first:
        version, _, _, state, _ = rows[0]
        state = await opened_state(
            encryption,
            tenant_id,
            aggregate_type,
            aggregate_id,
            schema_version or 0,
            int(version),
            state,
        )
        return StreamTail(int(version), json.loads(state), rows, 1)
    return StreamTail(0, None, rows, 0)


async def _open_events(
    encryption: PayloadEncryption,
    rows: list[Any],
    sealed: list[int],
    tenant_id: str,
    aggregate_id: str,
) -> None:
    """The sealed events' rows with their data opened, in place (the key looked up once)."""
    opener = await encryption.text_opener(tenant_id, f"stream {tenant_id}/{aggregate_id}")
    for i in sealed:
        sequence_number, event_type, event_version, text, event_id = rows[i]
        rows[i] = (sequence_number, event_type, event_version, opener(event_id, text), event_id)
