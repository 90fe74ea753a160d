"""A rule across two aggregates: a tenant has at most ``max_users`` active users.

A user's registration takes a seat on its tenant's stream, and its deactivation frees it. The
command handler appends the user's events and the tenant's seat event in one transaction, the
tenant's at the version it was loaded at: two registrations racing for the last seat collide on
the tenant's stream, and the loser decides again against the tenant that now has one seat less.
"""

from __future__ import annotations

from collections.abc import Sequence

from acci.domain.errors import DomainError
from acci.domain.events import DomainEvent
from acci.domain.tenant import TenantState
from acci.domain.tenant_events import UserSeatReleased, UserSeatReserved
from acci.domain.user_events import UserDeactivated, UserRegistered


def seat_events(
    tenant_id: str, tenant: TenantState, user_id: str, user_events: Sequence[DomainEvent]
) -> list[DomainEvent]:
    """The tenant's events for what a user's command decided; ``DomainError`` when a
    registration finds every seat taken."""
    taken = tenant.active_users
    events: list[DomainEvent] = []
    for event in user_events:
        if isinstance(event, UserRegistered):
            limit = tenant.settings.max_users
            if taken >= limit:
                raise DomainError(
                    f"tenant {tenant_id!r} has {taken} active users, its limit (max_users"
                    f" {limit}); deactivate a user or raise max_users first",
                    reason="user_limit_reached",
                )
            taken += 1
            events.append(UserSeatReserved(user_id=user_id))
        elif isinstance(event, UserDeactivated):
            taken -= 1
            events.append(UserSeatReleased(user_id=user_id))
    return events
