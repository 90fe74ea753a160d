"""Commands of the User aggregate."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from acci.domain.command import Command
from acci.domain.identifiers import AggregateId
from acci.domain.roles import Role
from acci.domain.text import Email, Name, Reason


class _UserCommand(Command):
    # The aggregate id of a user is its user id; the tenant comes with the command's envelope.
    user_id: AggregateId

    @property
    def aggregate_id(self) -> str:
        """The user id."""
        return self.user_id


class RegisterUser(_UserCommand):
    """Register a user with an email address, a display name and at least one role."""

    command_type: ClassVar[str] = "RegisterUser"

    email: Email
    display_name: Name
    roles: frozenset[Role] = Field(default=frozenset({"member"}), min_length=1)


class ChangeUserEmail(_UserCommand):
    """Change a user's email address."""

    command_type: ClassVar[str] = "ChangeUserEmail"

    email: Email


class AssignRole(_UserCommand):
    """Give a user a role."""

    command_type: ClassVar[str] = "AssignRole"

    role: Role


class RevokeRole(_UserCommand):
    """Take a role from a user; the last role cannot be taken."""

    command_type: ClassVar[str] = "RevokeRole"

    role: Role


class DeactivateUser(_UserCommand):
    """Deactivate a user, for good."""

    command_type: ClassVar[str] = "DeactivateUser"

    reason: Reason | None = None


UserCommand = RegisterUser | ChangeUserEmail | AssignRole | RevokeRole | DeactivateUser
