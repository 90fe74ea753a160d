"""Routing commands: command types, aggregates, aggregate ids, and parsing commands from JSON."""

from __future__ import annotations

from typing import ClassVar

import pytest

from acci.domain import (
    AGGREGATES,
    COMMAND_TYPES,
    CommandValidationError,
    Tenant,
    User,
    aggregate_for_command,
    aggregate_id_of,
    parse_command,
)
from acci.domain.command import Command
from acci.domain.tenant import (
    CreateTenant,
    DeleteTenant,
    ReactivateTenant,
    RenameTenant,
    SuspendTenant,
    TenantSettings,
    UpdateTenantSettings,
)
from acci.domain.user import AssignRole, ChangeUserEmail, DeactivateUser, RegisterUser, RevokeRole

# One example of every command, with the aggregate it goes to and the id it names.
EXAMPLES: list[tuple[Command, type[Tenant | User], str]] = [
    (CreateTenant(tenant_id="acme", name="Acme"), Tenant, "acme"),
    (RenameTenant(tenant_id="acme", name="Acme Two"), Tenant, "acme"),
    (
        UpdateTenantSettings(tenant_id="acme", settings=TenantSettings(features={"sso": True})),
        Tenant,
        "acme",
    ),
    (SuspendTenant(tenant_id="acme", reason="unpaid"), Tenant, "acme"),
    (ReactivateTenant(tenant_id="acme"), Tenant, "acme"),
    (DeleteTenant(tenant_id="acme", reason=None), Tenant, "acme"),
    (
        RegisterUser(
            user_id="u1", email="a@example.com", display_name="A", roles={"admin", "member"}
        ),
        User,
        "u1",
    ),
    (ChangeUserEmail(user_id="u1", email="b@example.com"), User, "u1"),
    (AssignRole(user_id="u1", role="admin"), User, "u1"),
    (RevokeRole(user_id="u1", role="admin"), User, "u1"),
    (DeactivateUser(user_id="u1", reason="left"), User, "u1"),
]


def _id(example: object) -> str:
    return type(example).__name__


def test_the_examples_cover_every_command_type() -> None:
    assert {command.command_type for command, _, _ in EXAMPLES} == set(COMMAND_TYPES)


def test_every_command_type_is_its_class_name() -> None:
    for command_type, command_class in COMMAND_TYPES.items():
        assert command_type == command_class.__name__
        assert command_class.command_type == command_type


def test_aggregates_are_listed_by_aggregate_type() -> None:
    assert AGGREGATES == {"Tenant": Tenant, "User": User}


@pytest.mark.parametrize(("command", "aggregate", "aggregate_id"), EXAMPLES, ids=_id)
def test_every_command_is_routed_to_its_aggregate_and_id(
    command: Command, aggregate: type[Tenant | User], aggregate_id: str
) -> None:
    assert aggregate_for_command(command) is aggregate
    assert aggregate_id_of(command) == aggregate_id


def test_a_command_no_aggregate_handles_is_a_validation_error() -> None:
    class Stray(Command):
        command_type: ClassVar[str] = "Stray"

        @property
        def aggregate_id(self) -> str:
            return "stray-1"

    with pytest.raises(CommandValidationError, match="no aggregate handles"):
        aggregate_for_command(Stray())


@pytest.mark.parametrize(("command", "aggregate", "aggregate_id"), EXAMPLES, ids=_id)
def test_every_command_survives_the_trip_through_json(
    command: Command, aggregate: type[Tenant | User], aggregate_id: str
) -> None:
    # Commands travel as JSON (workflow inputs); parsing what was dumped gives the same command.
    assert parse_command(command.command_type, command.model_dump(mode="json")) == command


def test_parsing_an_unknown_command_type_lists_the_known_ones() -> None:
    with pytest.raises(CommandValidationError) as info:
        parse_command("DropTables", {})
    assert str(info.value).startswith("unknown command type 'DropTables'; known: AssignRole, ")


def test_parsing_a_command_with_missing_fields_names_them() -> None:
    with pytest.raises(CommandValidationError) as info:
        parse_command("RenameTenant", {})
    assert str(info.value) == (
        "invalid RenameTenant: tenant_id: Field required; name: Field required"
    )


def test_commands_are_immutable() -> None:
    command = RenameTenant(tenant_id="acme", name="Acme")
    with pytest.raises(ValueError, match="frozen"):
        command.name = "Other"  # type: ignore[misc]
