"""The User aggregate: a user of one tenant, with an email address and roles."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, assert_never, get_args

from pydantic import BaseModel, ConfigDict, field_serializer

from acci.domain.aggregate import EventSourced
from acci.domain.command import Command
from acci.domain.errors import AuthorizationError, DomainError, UnknownEventTypeError
from acci.domain.events import DomainEvent
from acci.domain.principals import Principal
from acci.domain.roles import OWNER, ROLES
from acci.domain.user_commands import (
    AssignRole,
    ChangeUserEmail,
    DeactivateUser,
    RegisterUser,
    RevokeRole,
    UserCommand,
)
from acci.domain.user_events import (
    RoleAssigned,
    RoleRevoked,
    UserDeactivated,
    UserEmailChanged,
    UserEvent,
    UserRegistered,
)

__all__ = [
    "ROLES",
    "AssignRole",
    "ChangeUserEmail",
    "DeactivateUser",
    "RegisterUser",
    "RevokeRole",
    "RoleAssigned",
    "RoleRevoked",
    "User",
    "UserCommand",
    "UserDeactivated",
    "UserEmailChanged",
    "UserEvent",
    "UserRegistered",
    "UserState",
    "UserStatus",
]


class UserStatus(StrEnum):
    """Where a user is in its lifecycle; ``none`` means it was never registered."""

    NONE = "none"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"


class UserState(BaseModel):
    """What the User aggregate knows: status, email address, display name and roles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: UserStatus = UserStatus.NONE
    email: str = ""
    display_name: str = ""
    roles: frozenset[str] = frozenset()

    @field_serializer("roles", when_used="json")
    def _roles_sorted(self, roles: frozenset[str]) -> list[str]:
        # Set order changes between processes; snapshots should not.
        return sorted(roles)


class User(EventSourced[UserState, UserCommand]):
    """A user of one tenant; its aggregate id is its user id."""

    aggregate_type: ClassVar[str] = "User"
    state_schema_version: ClassVar[int] = 1
    command_types: ClassVar[tuple[type[Command], ...]] = get_args(UserCommand)

    @staticmethod
    def initial_state() -> UserState:
        """A user that is not registered yet."""
        return UserState()

    @staticmethod
    def authorize_on_state(command: UserCommand, state: UserState, principal: Principal) -> None:
        """Only an owner (or a system administrator) changes an owner's account: deactivates
        them, changes their email address or takes a role from them. The command policy lets
        admins manage users without seeing whom; here the user is loaded, and its roles known."""
        if OWNER not in state.roles or principal.is_system_admin or OWNER in principal.roles:
            return
        if isinstance(command, ChangeUserEmail | DeactivateUser | RevokeRole):
            raise AuthorizationError(
                f"{principal.describe()} may not send {command.command_type} to user"
                f" {command.user_id!r}: the user is an {OWNER} of the tenant, and only an"
                f" {OWNER} changes an {OWNER}'s account"
            )

    @staticmethod
    def decide(command: UserCommand, state: UserState) -> list[DomainEvent]:
        """The events ``command`` produces; raises ``DomainError`` when a rule forbids it."""
        user_id = command.user_id
        # Checked before "already exists": a deactivated user's id is never registered again.
        if state.status is UserStatus.DEACTIVATED:
            raise DomainError(f"user {user_id!r} is deactivated", reason="user_deactivated")
        if isinstance(command, RegisterUser):
            if state.status is not UserStatus.NONE:
                raise DomainError(f"user {user_id!r} already exists", reason="already_exists")
            return [
                UserRegistered(
                    email=command.email,
                    display_name=command.display_name,
                    roles=sorted(command.roles),
                )
            ]
        if state.status is UserStatus.NONE:
            raise DomainError(f"user {user_id!r} does not exist", reason="not_found")
        match command:
            case ChangeUserEmail():
                if command.email == state.email:
                    return []
                return [UserEmailChanged(old_email=state.email, new_email=command.email)]
            case AssignRole():
                if command.role in state.roles:
                    return []
                return [RoleAssigned(role=command.role)]
            case RevokeRole():
                if command.role not in state.roles:
                    return []
                if state.roles == {command.role}:
                    raise DomainError(
                        f"user {user_id!r} would lose its last role {command.role!r};"
                        " assign another role first",
                        reason="last_role",
                    )
                return [RoleRevoked(role=command.role)]
            case DeactivateUser():
                return [UserDeactivated(reason=command.reason)]
            case _:
                assert_never(command)

    @staticmethod
    def evolve(state: UserState, event: DomainEvent) -> UserState:
        """The state after ``event``."""
        match event:
            case UserRegistered():
                return state.model_copy(
                    update={
                        "status": UserStatus.ACTIVE,
                        "email": event.email,
                        "display_name": event.display_name,
                        "roles": frozenset(event.roles),
                    }
                )
            case UserEmailChanged():
                return state.model_copy(update={"email": event.new_email})
            case RoleAssigned():
                return state.model_copy(update={"roles": state.roles | {event.role}})
            case RoleRevoked():
                return state.model_copy(update={"roles": state.roles - {event.role}})
            case UserDeactivated():
                return state.model_copy(update={"status": UserStatus.DEACTIVATED})
            case _:
                # A foreign event in a user stream is corruption; skipping it would hide that.
                raise UnknownEventTypeError(
                    event.event_type, event.event_version, detail="not a User event"
                )
