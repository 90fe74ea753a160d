"""Projections: pure functions from one event to the read-model row changes it causes.

A projection does no I/O. The runner (``readmodels/runner.py``) reads events in the gap-free
global order (upcast to their current versions), asks the projection for each event's changes,
and applies them with the projection's checkpoint in one transaction.

Events a projection does not handle yield no changes: that is the documented answer for event
types it does not know (another aggregate's, or a type added later), and the checkpoint still
moves past them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Final

from acci.domain.events import DomainEvent
from acci.domain.registry import EventRegistry
from acci.domain.registry import registry as default_registry
from acci.domain.tenant_events import (
    TenantCreated,
    TenantRenamed,
    TenantSettingsUpdated,
)
from acci.domain.user_events import (
    RoleAssigned,
    RoleRevoked,
    UserEmailChanged,
    UserRegistered,
)
from acci.eventstore.records import RecordedEvent
from acci.readmodels.changes import Change, Update, Upsert
from acci.readmodels.failure_policy import FailurePolicy

"""What a projection does with an event it still cannot apply after its retries, once parked:
stop there (``pause``) or go on past it (``skip``)."""


class Projection(ABC):
    """Turns one event into changes to the projection's own tables; pure."""

    name: ClassVar[str]
    # The read_models tables this projection writes; a change to any other is refused.
    tables: ClassVar[frozenset[str]]
    on_failure: ClassVar[FailurePolicy] = "pause"

    def __init__(self, *, registry: EventRegistry = default_registry) -> None:
        self._registry = registry

    @abstractmethod
    def handle_event(self, event: RecordedEvent) -> list[Change]:
        """The changes ``event`` causes; ``[]`` for an event this projection does not handle."""

    def decode(self, event: RecordedEvent) -> DomainEvent:
        """The typed domain event (the data is already upcast; this validates it)."""
        return self._registry.decode(event.event_type, event.event_version, event.data)


# Events whose type says all a projection takes from them are matched by their type name, not
# decoded: decoding validates the data again, which these projections do not read (a stored
# event was validated when it was appended). Events whose data is used are decoded.
_TENANT_STATUS: Final = {
    "TenantSuspended": "suspended",
    "TenantReactivated": "active",
    "TenantDeleted": "deleted",
}
_SEATS: Final = frozenset({"UserSeatReserved", "UserSeatReleased"})
_USER_COUNT: Final = {"UserRegistered": 1, "UserDeactivated": -1}


class TenantsProjection(Projection):
    """``read_models.tenants``: a tenant's name, status, settings and active-user count."""

    name = "tenants"
    tables = frozenset({"tenants"})
    _decoded: ClassVar[frozenset[str]] = frozenset(
        {"TenantCreated", "TenantRenamed", "TenantSettingsUpdated"}
    )
    _handled: ClassVar[frozenset[str]] = frozenset({*_TENANT_STATUS, *_SEATS, *_decoded})

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        kind = event.event_type
        step = _USER_COUNT.get(kind)
        if step is None and kind not in self._handled:
            return []  # not about a tenant row: nothing to change
        key = {"tenant_id": event.tenant_id}
        if step is not None:
            # A user's events change its tenant's row, not the tenant stream's version.
            touched = {"last_updated": event.created_at}
            return [Update("tenants", key, touched, increments={"user_count": step})]
        stream = {"last_updated": event.created_at, "version": event.sequence_number}
        if (status := _TENANT_STATUS.get(kind)) is not None:
            return [Update("tenants", key, {"status": status, **stream})]
        if kind in _SEATS:
            # Seats move the tenant stream's version; the count follows the users' own events.
            return [Update("tenants", key, stream)]
        match self.decode(event):
            case TenantCreated() as e:
                values = {
                    "name": e.name,
                    "status": "active",
                    "user_count": 0,
                    "settings": e.settings.model_dump(mode="json"),
                    "created_at": event.created_at,
                    **stream,
                }
                return [Upsert("tenants", key, values)]
            case TenantRenamed() as e:
                return [Update("tenants", key, {"name": e.new_name, **stream})]
            case TenantSettingsUpdated() as e:
                settings = e.settings.model_dump(mode="json")
                return [Update("tenants", key, {"settings": settings, **stream})]
            case _:
                return []


class UsersProjection(Projection):
    """``read_models.users``: a user's email, display name, roles and status."""

    name = "users"
    tables = frozenset({"users"})

    def handle_event(self, event: RecordedEvent) -> list[Change]:
        if event.aggregate_type != "User":
            return []  # only user streams have user rows
        key = {"tenant_id": event.tenant_id, "user_id": event.aggregate_id}
        stream = {"last_updated": event.created_at, "version": event.sequence_number}
        if event.event_type == "UserDeactivated":
            return [Update("users", key, {"status": "deactivated", **stream})]
        match self.decode(event):
            case UserRegistered() as e:
                values = {
                    "email": e.email,
                    "display_name": e.display_name,
                    "roles": sorted(set(e.roles)),
                    "status": "active",
                    "created_at": event.created_at,
                    **stream,
                }
                return [Upsert("users", key, values)]
            case UserEmailChanged() as e:
                return [Update("users", key, {"email": e.new_email, **stream})]
            case RoleAssigned() as e:
                return [Update("users", key, stream, add_to_set={"roles": e.role})]
            case RoleRevoked() as e:
                return [Update("users", key, stream, remove_from_set={"roles": e.role})]
            case _:
                return []


class TenantActivityProjection(Projection):
    """``read_models.tenant_activity``: per tenant and event type, a count and the last time."""

    name = "tenant_activity"
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


PROJECTIONS: Final[tuple[type[Projection], ...]] = (
    TenantsProjection,
    UsersProjection,
    TenantActivityProjection,
)
"""The built-in application's projections (``readmodels/tenancy.py``); a worker runs every
installed application's (``readmodels/installed.py``)."""
