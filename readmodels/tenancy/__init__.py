"""The built-in application: tenants and users, declared as any plugged-in application is.

Its domain (aggregates and the tenant rule) is ``acci.domain.tenancy``; its read side is here,
one module per read model (``tenants``, ``users``, ``tenant_activity``), each holding its row
type, its DDL per version, its projection and its queries.
"""

from __future__ import annotations

from typing import Final

from acci.domain import tenancy, tenant_events, user_events
from acci.domain.events import DomainEvent
from acci.readmodels.application import Application
from acci.readmodels.tenancy import tenant_activity, tenants, users


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


TENANCY: Final = Application(
    name=tenancy.NAME,
    aggregates=tenancy.AGGREGATES,
    rules=tenancy.RULES,
    events=_events(),
    read_models=(tenants.READ_MODEL, users.READ_MODEL, tenant_activity.READ_MODEL),
)
