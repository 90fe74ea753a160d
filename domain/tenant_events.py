"""Events of the Tenant aggregate."""

from __future__ import annotations

from typing import ClassVar

from acci.domain.events import DomainEvent
from acci.domain.registry import registry
from acci.domain.tenant_settings import TenantSettings
from acci.domain.text import Name, Reason


@registry.register
class TenantCreated(DomainEvent):
    """A tenant came into being, active."""

    event_type: ClassVar[str] = "TenantCreated"
    event_version: ClassVar[int] = 1

    name: Name
    settings: TenantSettings


@registry.register
class TenantRenamed(DomainEvent):
    """A tenant's name changed."""

    event_type: ClassVar[str] = "TenantRenamed"
    event_version: ClassVar[int] = 1

    old_name: Name
    new_name: Name


@registry.register
class TenantSettingsUpdated(DomainEvent):
    """A tenant's settings were replaced as a whole."""

    event_type: ClassVar[str] = "TenantSettingsUpdated"
    event_version: ClassVar[int] = 1

    settings: TenantSettings


@registry.register
class TenantSuspended(DomainEvent):
    """An active tenant was suspended; it accepts no work until reactivated."""

    event_type: ClassVar[str] = "TenantSuspended"
    event_version: ClassVar[int] = 1

    reason: Reason


@registry.register
class TenantReactivated(DomainEvent):
    """A suspended tenant became active again."""

    event_type: ClassVar[str] = "TenantReactivated"
    event_version: ClassVar[int] = 1


@registry.register
class TenantDeleted(DomainEvent):
    """A tenant was deleted; this is final."""

    event_type: ClassVar[str] = "TenantDeleted"
    event_version: ClassVar[int] = 1

    reason: Reason | None = None


@registry.register
class UserSeatReserved(DomainEvent):
    """A user of the tenant was registered and takes one of its ``max_users`` seats.

    Appended to the tenant's stream in the same transaction as the user's ``UserRegistered``,
    so two registrations racing for the last seat collide on the tenant's stream version.
    """

    event_type: ClassVar[str] = "UserSeatReserved"
    event_version: ClassVar[int] = 1

    user_id: str


@registry.register
class UserSeatReleased(DomainEvent):
    """A user of the tenant was deactivated; its seat is free again."""

    event_type: ClassVar[str] = "UserSeatReleased"
    event_version: ClassVar[int] = 1

    user_id: str


TenantEvent = (
    TenantCreated
    | TenantRenamed
    | TenantSettingsUpdated
    | TenantSuspended
    | TenantReactivated
    | TenantDeleted
    | UserSeatReserved
    | UserSeatReleased
)
