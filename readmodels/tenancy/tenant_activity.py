"""The ``tenant_activity`` read model: per tenant and event type, a count and the last time.

Everything about it is here: the row type (its shape), the DDL of each version, the projection
and its query with its handler. The query reads the stable name ``read_models.tenant_activity``,
a view of the live version's table.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Final

import sqlmodel
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, Text

from acci.eventstore.records import RecordedEvent
from acci.readmodels.changes import Change, Upsert
from acci.readmodels.errors import NotFoundError
from acci.readmodels.handlers import fetch, view
from acci.readmodels.projections import Projection
from acci.readmodels.queries import Result, TenantQuery
from acci.readmodels.read_model import QueryHandler, ReadModel, timestamptz

NAME: Final = "tenant_activity"

# --- shape ---------------------------------------------------------------------------------------


class TenantActivity(sqlmodel.SQLModel, table=True):
    """How many events of one type a tenant's aggregates have had, and when the last one was."""

    __tablename__ = "tenant_activity"
    __table_args__ = {"schema": "read_models"}

    tenant_id: str = sqlmodel.Field(primary_key=True, sa_type=Text)
    event_type: str = sqlmodel.Field(primary_key=True, sa_type=Text)
    event_count: int = sqlmodel.Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # created_at of the last event of this type applied.
    last_event_at: datetime = timestamptz()


DDL: Final = {
    1: """
CREATE TABLE {tenant_activity} (
    tenant_id text NOT NULL,
    event_type text NOT NULL,
    event_count bigint NOT NULL DEFAULT 0,
    last_event_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_type)
);
""",
}

# --- projection ----------------------------------------------------------------------------------


class TenantActivityProjection(Projection):
    """``tenant_activity``: per tenant and event type, a count and the last time."""

    name = NAME
    tables = frozenset({"tenant_activity"})
    # Counters: one parked event should not hold every tenant's counts back.
    on_failure = "skip"
    _aggregates: ClassVar[frozenset[str]] = frozenset({"Tenant", "User"})

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        if event.aggregate_type not in self._aggregates:
            return []  # another aggregate's events are not tenant activity (yet)
        return [
            Upsert(
                "tenant_activity",
                {"tenant_id": event.tenant_id, "event_type": event.event_type},
                {"last_event_at": event.created_at},
                increments={"event_count": 1},
            )
        ]


# --- query ---------------------------------------------------------------------------------------


class EventTypeActivity(Result):
    """How many events of one type a tenant has had, and when the last one happened."""

    event_type: str
    event_count: int
    last_event_at: datetime


class TenantActivityView(Result):
    """A tenant's events counted by type (sorted by type), with totals."""

    tenant_id: str
    event_types: tuple[EventTypeActivity, ...]
    total_events: int
    last_event_at: datetime


class GetTenantActivity(TenantQuery[TenantActivityView]):
    """A tenant's events counted by type; ``NotFoundError`` if none are recorded."""

    projections: ClassVar[tuple[str, ...]] = (NAME,)
    result_type: ClassVar[type[BaseModel]] = TenantActivityView


_GET: Final = sql.SQL(
    "SELECT event_type, event_count, last_event_at FROM read_models.tenant_activity"
    " WHERE tenant_id = %s ORDER BY event_type"
)


def tenant_activity(pool: AsyncConnectionPool) -> QueryHandler:
    """``GetTenantActivity``: the tenant's counts by type, or ``NotFoundError`` if none."""

    async def answer(query: GetTenantActivity) -> TenantActivityView:
        rows = await fetch(pool, _GET, (query.tenant_id,))
        if not rows:
            raise NotFoundError(f"no activity recorded for tenant {query.tenant_id!r}")
        by_type = tuple(view(EventTypeActivity, row) for row in rows)
        return TenantActivityView(
            tenant_id=query.tenant_id,
            event_types=by_type,
            total_events=sum(a.event_count for a in by_type),
            last_event_at=max(a.last_event_at for a in by_type),
        )

    return answer


READ_MODEL: Final = ReadModel(
    projection=TenantActivityProjection,
    rows=(TenantActivity,),
    ddl=DDL,
    queries={GetTenantActivity: tenant_activity},
)
