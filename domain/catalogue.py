"""Every aggregate and command the domain knows, and how to route a command to its aggregate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pydantic

from acci.domain.aggregate import EventSourced
from acci.domain.command import Command
from acci.domain.errors import CommandValidationError, shown, validation_error_from_pydantic
from acci.domain.tenant import Tenant
from acci.domain.user import User

AGGREGATES: Final[dict[str, type[EventSourced[Any, Any]]]] = {
    aggregate.aggregate_type: aggregate for aggregate in (Tenant, User)
}

COMMAND_TYPES: Final[dict[str, type[Command]]] = {
    command.command_type: command
    for aggregate in AGGREGATES.values()
    for command in aggregate.command_types
}

_AGGREGATE_OF_COMMAND: Final[dict[type[Command], type[EventSourced[Any, Any]]]] = {
    command: aggregate for aggregate in AGGREGATES.values() for command in aggregate.command_types
}


def aggregate_for_command(command: Command) -> type[EventSourced[Any, Any]]:
    """The aggregate class that handles ``command``."""
    try:
        return _AGGREGATE_OF_COMMAND[type(command)]
    except KeyError:
        raise CommandValidationError(f"no aggregate handles {type(command).__qualname__}") from None


def aggregate_id_of(command: Command) -> str:
    """The id of the aggregate ``command`` is addressed to."""
    return command.aggregate_id


def parse_command(command_type: str, data: Mapping[str, Any]) -> Command:
    """The command of ``command_type`` built from JSON-like ``data``.

    Raises ``CommandValidationError`` for an unknown type or invalid data, with every problem
    in one message.
    """
    command_class = COMMAND_TYPES.get(command_type)
    if command_class is None:
        raise CommandValidationError(
            f"unknown command type {shown(command_type)}; known: {', '.join(sorted(COMMAND_TYPES))}"
        )
    try:
        return command_class.model_validate(data)
    except pydantic.ValidationError as e:
        raise validation_error_from_pydantic(e, command_type) from e
