"""Events of the User aggregate, and the upcasters of their older versions."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field

from acci.domain.events import DomainEvent
from acci.domain.registry import registry
from acci.domain.roles import RoleName
from acci.domain.text import Email, Name, Reason


def _sorted_unique(roles: list[str]) -> list[str]:
    # One spelling per role set, so equal events serialise to equal JSON.
    return sorted(set(roles))


@registry.register
class UserRegistered(DomainEvent):
    """A user was registered in a tenant, active, with at least one role.

    Version 2: version 1 stored the display name under ``name``; it became ``display_name`` to
    match the command and the read models. ``_user_registered_v1_to_v2`` converts stored v1 data.
    """

    event_type: ClassVar[str] = "UserRegistered"
    event_version: ClassVar[int] = 2

    email: Email
    display_name: Name
    roles: Annotated[list[RoleName], Field(min_length=1), AfterValidator(_sorted_unique)]


@registry.register_upcaster("UserRegistered", 1)
def _user_registered_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data["display_name"] = data.pop("name")
    return data


@registry.register
class UserEmailChanged(DomainEvent):
    """A user's email address changed."""

    event_type: ClassVar[str] = "UserEmailChanged"
    event_version: ClassVar[int] = 1

    old_email: Email
    new_email: Email


@registry.register
class RoleAssigned(DomainEvent):
    """A user was given a role."""

    event_type: ClassVar[str] = "RoleAssigned"
    event_version: ClassVar[int] = 1

    role: RoleName


@registry.register
class RoleRevoked(DomainEvent):
    """A role was taken from a user."""

    event_type: ClassVar[str] = "RoleRevoked"
    event_version: ClassVar[int] = 1

    role: RoleName


@registry.register
class UserDeactivated(DomainEvent):
    """A user was deactivated; this is final."""

    event_type: ClassVar[str] = "UserDeactivated"
    event_version: ClassVar[int] = 1

    reason: Reason | None = None


UserEvent = UserRegistered | UserEmailChanged | RoleAssigned | RoleRevoked | UserDeactivated
