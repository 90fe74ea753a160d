"""The built-in application: tenants and users, declared as any plugged-in application is.

Its domain (aggregates and the tenant rule) is ``acci.domain.tenancy``; its read side is here:
three projections over tables ACCI's own migrations create (004_read_models.sql), and the five
queries of ``readmodels/queries.py``.
"""

from __future__ import annotations

from typing import Final

from psycopg_pool import AsyncConnectionPool

from acci.domain import tenancy, tenant_events, user_events
from acci.domain.events import DomainEvent
from acci.readmodels.application import Application, HandlerFactory, QueryHandler
from acci.readmodels.handlers import ReadModelQueries
from acci.readmodels.projections import PROJECTIONS
from acci.readmodels.queries import (
    GetTenantActivity,
    GetTenantDetails,
    GetUser,
    ListTenants,
    ListTenantUsers,
)


def _events() -> tuple[type[DomainEvent], ...]:
    found = []
    for module in (tenant_events, user_events):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, DomainEvent)
                and value is not DomainEvent
            ):
                found.append(value)
    return tuple(found)


def _answer(method: str) -> HandlerFactory:
    """The factory of a ``ReadModelQueries`` method bound to the pool it is given."""

    def factory(pool: AsyncConnectionPool) -> QueryHandler:
        handler: QueryHandler = getattr(ReadModelQueries(pool), method)
        return handler

    return factory


TENANCY: Final = Application(
    name=tenancy.NAME,
    aggregates=tenancy.AGGREGATES,
    rules=tenancy.RULES,
    events=_events(),
    projections=PROJECTIONS,
    # Created by ACCI's own migrations.
    read_models={"tenants": None, "users": None, "tenant_activity": None},
    queries={
        GetTenantDetails: _answer("tenant_details"),
        ListTenants: _answer("tenants"),
        GetUser: _answer("user"),
        ListTenantUsers: _answer("tenant_users"),
        GetTenantActivity: _answer("tenant_activity"),
    },
)
