"""Every aggregate and command the installed applications declare, and the rules between them.

The catalogue starts with the built-in tenancy application (Tenant and User); every other
application adds its own when it is installed (``acci.readmodels.application.install``).
``AGGREGATES`` and ``COMMAND_TYPES`` are the live tables: what is added shows in them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import pydantic

from acci.domain.aggregate import EventSourced
from acci.domain.command import Command
from acci.domain.errors import CommandValidationError, shown, validation_error_from_pydantic
from acci.domain.rules import RelatedAggregate

Aggregate = type[EventSourced[Any, Any]]

AGGREGATES: Final[dict[str, Aggregate]] = {}
COMMAND_TYPES: Final[dict[str, type[Command]]] = {}
_AGGREGATE_OF_COMMAND: Final[dict[type[Command], Aggregate]] = {}
_RULES: Final[dict[Aggregate, list[RelatedAggregate]]] = {}
_OWNERS: Final[dict[str, str]] = {}  # aggregate or command type -> the application declaring it


class CatalogueConflictError(ValueError):
    """Two applications declare one aggregate or command type (nothing of the second is added)."""


def add(
    application: str, aggregates: Iterable[Aggregate], rules: Iterable[RelatedAggregate]
) -> None:
    """Add an application's aggregates, their commands and its rules, all or nothing.

    Adding what the same application added before changes nothing.
    """
    aggregates, rules = list(aggregates), list(rules)
    names: dict[str, str] = {}
    for aggregate in aggregates:
        names[aggregate.aggregate_type] = "aggregate type"
        for command in aggregate.command_types:
            names[command.command_type] = "command type"
    for name, kind in names.items():
        owner = _OWNERS.get(name)
        known = AGGREGATES.get(name) or COMMAND_TYPES.get(name)
        mine = known in aggregates or any(known in a.command_types for a in aggregates)
        if owner is not None and not (owner == application and mine):
            raise CatalogueConflictError(
                f"{kind} {name!r} is declared by application {owner!r} already"
            )
    for rule in rules:
        if rule.aggregate.aggregate_type not in AGGREGATES and rule.aggregate not in aggregates:
            raise CatalogueConflictError(
                f"a rule needs aggregate {rule.aggregate.aggregate_type!r}, which no installed"
                " application declares"
            )
    for aggregate in aggregates:
        AGGREGATES[aggregate.aggregate_type] = aggregate
        _OWNERS[aggregate.aggregate_type] = application
        for command in aggregate.command_types:
            COMMAND_TYPES[command.command_type] = command
            _AGGREGATE_OF_COMMAND[command] = aggregate
            _OWNERS[command.command_type] = application
    for rule in rules:
        for aggregate in rule.applies_to:
            known_rules = _RULES.setdefault(aggregate, [])
            if rule not in known_rules:
                known_rules.append(rule)


def owner(type_name: str) -> str | None:
    """The application that declared an aggregate or command type."""
    return _OWNERS.get(type_name)


def rules_for(aggregate: Aggregate) -> list[RelatedAggregate]:
    """The rules commands of ``aggregate`` are subject to, in the order they were declared."""
    return _RULES.get(aggregate, [])


def aggregate_for_command(command: Command) -> Aggregate:
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
