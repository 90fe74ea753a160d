"""Checks of the live event store (``acci verify``): streams contiguous, every event readable,
snapshots equal to a fold.

Each check reads committed rows only and changes nothing; each returns how much it looked at
and the first few problems it found, named precisely (tenant, stream, event, position).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.domain.catalogue import AGGREGATES
from acci.domain.registry import EventRegistry
from acci.eventstore.encryption import OFF, PayloadEncryption
from acci.eventstore.errors import TenantKeyShreddedError, translated
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import opened_state

MAX_PROBLEMS: Final = 10
_PAGE: Final = 2_000


@dataclass(frozen=True, slots=True)
class Check:
    """One check: what it looked at, and the first problems it found."""

    name: str
    looked_at: int
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def passed(self) -> bool:
        return self.problem_count == 0


def _tenant(tenant: str | None) -> tuple[sql.SQL, dict[str, Any]]:
    if tenant is None:
        return sql.SQL("TRUE"), {}
    return sql.SQL("tenant_id = %(tenant)s"), {"tenant": tenant}


async def stream_contiguity(pool: AsyncConnectionPool, tenant: str | None) -> Check:
    """Every stream's sequence numbers are 1..n, no gap, no duplicate."""
    where, params = _tenant(tenant)
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT tenant_id, aggregate_type, aggregate_id, count(*),"
                    " min(sequence_number), max(sequence_number),"
                    " count(*) FILTER (WHERE NOT ok) FROM (SELECT tenant_id, aggregate_type,"
                    " aggregate_id, sequence_number, sequence_number = row_number() OVER"
                    " (PARTITION BY tenant_id, aggregate_type, aggregate_id ORDER BY"
                    " sequence_number) AS ok FROM event_store.events WHERE {}) AS s"
                    " GROUP BY 1, 2, 3"
                ).format(where),
                params,
            )
            rows = await cur.fetchall()
    bad = [r for r in rows if r[6] or r[4] != 1 or r[5] != r[3]]
    problems = [
        f"stream {k}/{a} of tenant {t}: {n} events numbered {low}..{high}"
        for t, k, a, n, low, high, _ in bad[:MAX_PROBLEMS]
    ]
    return Check("stream contiguity", len(rows), problems, len(bad))


async def events_readable(
    pool: AsyncConnectionPool,
    registry: EventRegistry,
    tenant: str | None,
    *,
    encryption: PayloadEncryption = OFF,
) -> Check:
    """Every stored event's type is known, upcasts to its current version and decodes (sealed
    ones opened first; a shredded tenant's cannot be read and are not looked at)."""
    where, params = _tenant(tenant)
    after, looked, count = (0, 0), 0, 0
    problems: list[str] = []
    query = sql.SQL(
        "SELECT transaction_id::text::bigint, global_position, tenant_id, event_id,"
        " event_type, event_version, data FROM event_store.events WHERE"
        " {} AND (transaction_id, global_position) > (%(tx)s::text::xid8, %(gp)s)"
        " ORDER BY transaction_id, global_position LIMIT %(limit)s"
    ).format(where)
    while True:
        with translated():
            async with pool.connection() as conn:
                cur = await conn.execute(
                    query, {**params, "tx": str(after[0]), "gp": after[1], "limit": _PAGE}
                )
                rows = await cur.fetchall()
        if not rows:
            return Check("events decode and upcast", looked, problems, count)
        for tx, gp, tenant_id, event_id, event_type, version, data in rows:
            try:
                data = await encryption.open_event_data(
                    tenant_id, event_id, data, f"event {event_id} of tenant {tenant_id}"
                )
                current, upcast = registry.upcast(event_type, version, data)
                registry.decode(event_type, current, upcast)
            except TenantKeyShreddedError:
                looked -= 1  # shredded on purpose: nothing to check
            except Exception as e:
                count += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(
                        f"event {event_id} ({event_type} v{version}) of tenant {tenant_id} at"
                        f" {tx}:{gp}: {type(e).__name__}: {e}"
                    )
        looked += len(rows)
        after = (int(rows[-1][0]), int(rows[-1][1]))


async def snapshots_fold(
    pool: AsyncConnectionPool,
    repository: AggregateRepository,
    tenant: str | None,
    sample: int,
    *,
    encryption: PayloadEncryption = OFF,
) -> Check:
    """A random sample of snapshots (of the current state schemas): each equals a fold of its
    stream's events up to its version."""
    where, params = _tenant(tenant)
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT tenant_id, aggregate_type, aggregate_id, sequence_number,"
                    " schema_version, state FROM snapshots.aggregate_snapshots WHERE {}"
                    " ORDER BY random() LIMIT %(sample)s"
                ).format(where),
                {**params, "sample": sample},
            )
            rows = await cur.fetchall()
    looked, count = 0, 0
    problems: list[str] = []
    for tenant_id, kind, aggregate_id, version, schema, state in rows:
        cls = AGGREGATES.get(kind)
        if cls is None or cls.state_schema_version != schema:
            continue  # an aggregate or state schema no longer installed: never read
        try:
            state = await opened_state(
                encryption, tenant_id, kind, aggregate_id, schema, version, state
            )
        except TenantKeyShreddedError:
            continue  # shredded on purpose: nothing to compare
        looked += 1
        folded = await repository.load(
            cls, tenant_id, aggregate_id, version=version, use_snapshot=False
        )
        if cls.state_from_json(state) != folded.state:
            count += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(
                    f"snapshot of {kind} {aggregate_id} (tenant {tenant_id}) at version"
                    f" {version} differs from a fold of its events"
                )
    return Check("snapshots equal a fold (sampled)", looked, problems, count)
