"""The User aggregate's commands and invariants, given/when/then."""

from __future__ import annotations

import pytest

from acci.domain import CommandValidationError, DomainError, UnknownEventTypeError, User
from acci.domain.command import Command
from acci.domain.tenant import TenantCreated, TenantSettings
from acci.domain.user import (
    AssignRole,
    ChangeUserEmail,
    DeactivateUser,
    RegisterUser,
    RevokeRole,
    RoleAssigned,
    RoleRevoked,
    UserDeactivated,
    UserEmailChanged,
    UserRegistered,
    UserState,
    UserStatus,
)
from tests.unit.given_when_then import TENANT_ID, given

U = "user-1"
REGISTERED = UserRegistered(email="bob@example.com", display_name="Bob", roles=["member"])
DEACTIVATED = UserDeactivated(reason=None)

EVERY_COMMAND: list[Command] = [
    RegisterUser(user_id=U, email="bob@example.com", display_name="Bob"),
    ChangeUserEmail(user_id=U, email="robert@example.com"),
    AssignRole(user_id=U, role="admin"),
    RevokeRole(user_id=U, role="member"),
    DeactivateUser(user_id=U, reason="left the company"),
]
EVERY_COMMAND_BUT_REGISTER = EVERY_COMMAND[1:]


def _ids(commands: list[Command]) -> list[str]:
    return [c.command_type for c in commands]


# --- RegisterUser ---------------------------------------------------------------------------


def test_registering_a_user_records_email_display_name_and_sorted_roles() -> None:
    command = RegisterUser(
        user_id=U, email="bob@example.com", display_name="Bob", roles={"viewer", "admin"}
    )
    given([]).when(command).then(
        [UserRegistered(email="bob@example.com", display_name="Bob", roles=["admin", "viewer"])]
    )


def test_registering_a_user_without_roles_makes_them_a_member() -> None:
    given([]).when(RegisterUser(user_id=U, email="bob@example.com", display_name="Bob")).then(
        [REGISTERED]
    )


def test_a_registered_user_is_active_with_their_details() -> None:
    user = (
        given([])
        .when(RegisterUser(user_id=U, email="bob@example.com", display_name="Bob", roles={"owner"}))
        .then([UserRegistered(email="bob@example.com", display_name="Bob", roles=["owner"])])
    )
    assert user.state == UserState(
        status=UserStatus.ACTIVE,
        email="bob@example.com",
        display_name="Bob",
        roles=frozenset({"owner"}),
    )


def test_registering_a_user_twice_is_rejected_as_already_exists() -> None:
    command = RegisterUser(user_id=U, email="other@example.com", display_name="Other")
    error = given([REGISTERED]).when(command).then_raises(DomainError, reason="already_exists")
    assert "'user-1'" in str(error)


def test_registering_a_deactivated_user_again_is_rejected_as_deactivated() -> None:
    command = RegisterUser(user_id=U, email="bob@example.com", display_name="Bob")
    given([REGISTERED, DEACTIVATED]).when(command).then_raises(
        DomainError, reason="user_deactivated"
    )


# --- ChangeUserEmail ------------------------------------------------------------------------


def test_changing_a_users_email_records_the_old_and_the_new_address() -> None:
    user = (
        given([REGISTERED])
        .when(ChangeUserEmail(user_id=U, email="robert@example.com"))
        .then([UserEmailChanged(old_email="bob@example.com", new_email="robert@example.com")])
    )
    assert user.state.email == "robert@example.com"


def test_changing_to_the_same_email_records_nothing() -> None:
    given([REGISTERED]).when(
        ChangeUserEmail(user_id=U, email="bob@example.com")
    ).then_nothing_happens()


def test_changing_to_the_same_email_with_an_uppercase_domain_records_nothing() -> None:
    given([REGISTERED]).when(
        ChangeUserEmail(user_id=U, email="bob@EXAMPLE.com")
    ).then_nothing_happens()


# --- AssignRole -----------------------------------------------------------------------------


def test_assigning_a_role_records_it() -> None:
    user = (
        given([REGISTERED])
        .when(AssignRole(user_id=U, role="admin"))
        .then([RoleAssigned(role="admin")])
    )
    assert user.state.roles == {"member", "admin"}


def test_assigning_a_role_the_user_already_has_records_nothing() -> None:
    given([REGISTERED]).when(AssignRole(user_id=U, role="member")).then_nothing_happens()


# --- RevokeRole -----------------------------------------------------------------------------


def test_revoking_a_role_records_it() -> None:
    history = [REGISTERED, RoleAssigned(role="admin")]
    user = (
        given(history).when(RevokeRole(user_id=U, role="member")).then([RoleRevoked(role="member")])
    )
    assert user.state.roles == {"admin"}


def test_revoking_a_role_the_user_does_not_have_records_nothing() -> None:
    given([REGISTERED]).when(RevokeRole(user_id=U, role="admin")).then_nothing_happens()


def test_revoking_the_last_role_is_rejected() -> None:
    error = (
        given([REGISTERED])
        .when(RevokeRole(user_id=U, role="member"))
        .then_raises(DomainError, reason="last_role")
    )
    assert "'member'" in str(error)


def test_revoking_a_role_that_was_revoked_before_records_nothing() -> None:
    history = [REGISTERED, RoleAssigned(role="admin"), RoleRevoked(role="admin")]
    given(history).when(RevokeRole(user_id=U, role="admin")).then_nothing_happens()


# --- DeactivateUser -------------------------------------------------------------------------


def test_deactivating_a_user_records_the_reason() -> None:
    user = (
        given([REGISTERED])
        .when(DeactivateUser(user_id=U, reason="left the company"))
        .then([UserDeactivated(reason="left the company")])
    )
    assert user.state.status is UserStatus.DEACTIVATED


def test_deactivating_a_user_without_a_reason_records_no_reason() -> None:
    given([REGISTERED]).when(DeactivateUser(user_id=U)).then([UserDeactivated(reason=None)])


# --- rules every command shares -------------------------------------------------------------


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=_ids(EVERY_COMMAND))
def test_every_command_on_a_deactivated_user_is_rejected(command: Command) -> None:
    given([REGISTERED, DEACTIVATED]).when(command).then_raises(
        DomainError, reason="user_deactivated"
    )


@pytest.mark.parametrize(
    "command", EVERY_COMMAND_BUT_REGISTER, ids=_ids(EVERY_COMMAND_BUT_REGISTER)
)
def test_every_command_but_register_on_an_unregistered_user_is_rejected_as_not_found(
    command: Command,
) -> None:
    given([]).when(command).then_raises(DomainError, reason="not_found")


# --- the aggregate itself -------------------------------------------------------------------


def test_a_user_lives_in_the_tenant_it_was_loaded_for() -> None:
    user = User.from_events(U, TENANT_ID, [REGISTERED])
    assert (user.aggregate_id, user.tenant_id) == (U, TENANT_ID)


def test_a_user_refuses_a_command_addressed_to_another_user() -> None:
    user = User.from_events(U, TENANT_ID, [REGISTERED])
    with pytest.raises(CommandValidationError, match="'user-2'"):
        user.handle(AssignRole(user_id="user-2", role="admin"))


def test_a_tenant_event_in_a_user_stream_is_not_silently_skipped() -> None:
    with pytest.raises(UnknownEventTypeError, match="not a User event"):
        User.from_events(
            U, TENANT_ID, [REGISTERED, TenantCreated(name="Acme", settings=TenantSettings())]
        )


def test_a_user_is_rebuilt_from_their_whole_history() -> None:
    history = [
        REGISTERED,
        UserEmailChanged(old_email="bob@example.com", new_email="robert@example.com"),
        RoleAssigned(role="admin"),
        RoleAssigned(role="owner"),
        RoleRevoked(role="member"),
    ]
    user = User.from_events(U, TENANT_ID, history)
    assert user.state == UserState(
        status=UserStatus.ACTIVE,
        email="robert@example.com",
        display_name="Bob",
        roles=frozenset({"admin", "owner"}),
    )
    assert user.version == 5
