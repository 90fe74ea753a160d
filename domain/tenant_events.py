"""Events of the Tenant aggregate."""

from __future__ import annotations

from typing import ClassVar

from domain.events import DomainEvent
from domain.registry import registry
from domain.tenant_settings import TenantSettings
from domain.text import Name, Reason


@registry.register
class TenantCreated(DomainEvent):
    """A tenant came into being, active."""

    event_type: ClassVar[str] = "TenantCreated"

    name: Name
    settings: TenantSettings


@registry.register
class TenantRenamed(DomainEvent):
    """A tenant's name changed."""

    event_type: ClassVar[str] = "TenantRenamed"

    old_name: Name
    new_name: Name


@registry.register
class TenantSettingsUpdated(DomainEvent):
    """A tenant's settings were replaced as a whole."""

    event_type: ClassVar[str] = "TenantSettingsUpdated"

    settings: TenantSettings


@registry.register
class TenantSuspended(DomainEvent):
    """An active tenant was suspended; it accepts no work until reactivated."""

    event_type: ClassVar[str] = "TenantSuspended"

    reason: Reason


@registry.register
class TenantReactivated(DomainEvent):
    """A suspended tenant became active again."""

    event_type: ClassVar[str] = "TenantReactivated"


@registry.register
class TenantDeleted(DomainEvent):
    """A tenant was deleted; this is final."""

    event_type: ClassVar[str] = "TenantDeleted"

    reason: Reason | None = None


TenantEvent = (
    TenantCreated
    | TenantRenamed
    | TenantSettingsUpdated
    | TenantSuspended
    | TenantReactivated
    | TenantDeleted
)
