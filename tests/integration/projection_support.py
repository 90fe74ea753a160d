"""Projection tests' helpers: the read models as a fold of the store, and a flaky projection.

``expected_rows`` computes the rows a tenant should have without the projections: names,
statuses, settings, emails and roles come from the aggregates (loaded by the repository), counts
and timestamps from the tenant's events in the global order. Nothing here shares code with
``readmodels/``, so a projection that agrees with it agrees with the event store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from acci.domain.tenant import Tenant
from acci.domain.user import User, UserStatus
from acci.eventstore.records import START, Position, RecordedEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore
from acci.readmodels.changes import Change, Upsert
from acci.readmodels.projections import Projection
from acci.readmodels.tenancy import TENANCY
from acci.readmodels.tenancy.tenant_activity import TenantActivity
from acci.readmodels.tenancy.tenants import TenantReadModel
from acci.readmodels.tenancy.users import UserReadModel

Rows = dict[str, list[dict[str, Any]]]


def tenancy_projections() -> list[Projection]:
    """The built-in read models' projections: not every installed one, as a workflow test run
    earlier in the same process may have installed an application of its own."""
    return [m.projection() for m in TENANCY.read_models]


async def tenant_events(store: EventStore, tenant: str) -> list[RecordedEvent]:
    """Every event of ``tenant`` in the global order."""
    events: list[RecordedEvent] = []
    after: Position = START
    while page := await store.read_all(after, limit=1_000, tenant_id=tenant):
        events.extend(page)
        after = page[-1].position
    return events


async def expected_rows(
    store: EventStore, repository: AggregateRepository, tenants: Iterable[str]
) -> Rows:
    """The rows of each read-model table for ``tenants``, as a fold of the event store says."""
    rows: Rows = {"tenants": [], "users": [], "tenant_activity": []}
    for tenant in sorted(tenants):
        events = await tenant_events(store, tenant)
        user_ids = sorted({e.aggregate_id for e in events if e.aggregate_type == "User"})
        users = {u: await repository.load(User, tenant, u) for u in user_ids}
        own = [e for e in events if e.aggregate_type == "Tenant"]
        if own:
            state = (await repository.load(Tenant, tenant, tenant)).state
            touching = [
                e
                for e in events
                if e.aggregate_type == "Tenant"
                or e.event_type in ("UserRegistered", "UserDeactivated")
            ]
            rows["tenants"].append(
                {
                    "tenant_id": tenant,
                    "name": state.name,
                    "status": state.status.value,
                    "user_count": sum(u.state.status is UserStatus.ACTIVE for u in users.values()),
                    "settings": state.settings.model_dump(mode="json"),
                    "created_at": own[0].created_at,
                    "last_updated": touching[-1].created_at,
                    "version": own[-1].sequence_number,
                }
            )
        for user_id, user in users.items():
            stream = [e for e in events if e.aggregate_id == user_id]
            rows["users"].append(
                {
                    "tenant_id": tenant,
                    "user_id": user_id,
                    "email": user.state.email,
                    "display_name": user.state.display_name,
                    "roles": sorted(user.state.roles),
                    "status": user.state.status.value,
                    "created_at": stream[0].created_at,
                    "last_updated": stream[-1].created_at,
                    "version": user.version,
                }
            )
        counts: dict[str, list[Any]] = {}
        for e in events:
            seen = counts.setdefault(e.event_type, [0, None])
            seen[0] += 1
            seen[1] = e.created_at
        rows["tenant_activity"].extend(
            {"tenant_id": tenant, "event_type": t, "event_count": n, "last_event_at": at}
            for t, (n, at) in sorted(counts.items())
        )
    return rows


async def read_model_rows(pool: AsyncConnectionPool, tenants: Iterable[str]) -> Rows:
    """The rows the projections wrote for ``tenants``, validated by the SQLModel row classes."""
    wanted = sorted(tenants)
    tables = (
        ("tenants", TenantReadModel, ["tenant_id"]),
        ("users", UserReadModel, ["tenant_id", "user_id"]),
        ("tenant_activity", TenantActivity, ["tenant_id", "event_type"]),
    )
    rows: Rows = {}
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        for table, model, order in tables:
            query = sql.SQL("SELECT * FROM {} WHERE tenant_id = ANY(%s) ORDER BY {}").format(
                sql.Identifier("read_models", table), sql.SQL(", ").join(map(sql.Identifier, order))
            )
            await cur.execute(query, (wanted,))
            rows[table] = [model.model_validate(r).model_dump() for r in await cur.fetchall()]
    return rows


class Flaky(Projection):
    """Counts how often it applied each event (in ``read_models.test_seen_v1``: version 1 of its
    table, where a checkpoint's projection writes until a rebuild switches it); fails on demand.

    An event whose new name (``name`` or ``new_name``) is in ``poisoned`` makes the handler
    raise; one whose name is in ``refused`` yields a change the database refuses (NOT NULL).
    """

    tables: ClassVar[frozenset[str]] = frozenset({"test_seen"})

    def __init__(self, tenants: set[str] | None = None) -> None:
        super().__init__()
        self.tenants = tenants
        self.poisoned: set[str] = set()
        self.refused: set[str] = set()

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        if self.tenants is not None and event.tenant_id not in self.tenants:
            return []
        name = event.data.get("new_name") or event.data.get("name")
        if name in self.poisoned:
            raise ValueError(f"poisoned {event.event_type} {name!r}")
        kind = None if name in self.refused else event.event_type
        return [
            Upsert(
                "test_seen",
                {"projection": self.name, "event_id": event.event_id},
                {"tenant_id": event.tenant_id, "event_type": kind},
                increments={"applied": 1},
            )
        ]


class FlakyPause(Flaky):
    name = "flaky_pause"
    on_failure = "pause"


class FlakySkip(Flaky):
    name = "flaky_skip"
    on_failure = "skip"


async def create_seen_table(pool: AsyncConnectionPool) -> None:
    """The table the flaky projections write."""
    async with pool.connection() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS read_models.test_seen_v1 (projection text, event_id uuid,"
            " tenant_id text NOT NULL, event_type text NOT NULL, applied int NOT NULL,"
            " PRIMARY KEY (projection, event_id))"
        )


async def seen(pool: AsyncConnectionPool, projection: str, tenant: str) -> dict[uuid.UUID, int]:
    """How often ``projection`` applied each event of ``tenant``."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_id, applied FROM read_models.test_seen_v1"
            " WHERE projection = %s AND tenant_id = %s",
            (projection, tenant),
        )
        return dict(await cur.fetchall())


async def newest_committed(pool: AsyncConnectionPool) -> Position | None:
    """The position of the newest committed event (visible to gap-free readers or not yet)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT transaction_id::text::bigint, global_position FROM event_store.events"
            " ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
        )
        row = await cur.fetchone()
    return None if row is None else Position(*row)
