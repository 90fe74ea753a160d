"""ACCI's pure domain: aggregates, commands, events, the event registry and domain errors.

Importing this package registers every Tenant and User event in ``registry``.
"""

from acci.domain.aggregate import EventSourced
from acci.domain.catalogue import (
    AGGREGATES,
    COMMAND_TYPES,
    aggregate_for_command,
    aggregate_id_of,
    parse_command,
)
from acci.domain.command import Command
from acci.domain.errors import (
    CommandError,
    CommandValidationError,
    ConcurrencyError,
    DomainError,
    PersistenceError,
    UnknownEventTypeError,
    validation_error_from_pydantic,
)
from acci.domain.events import DomainEvent
from acci.domain.registry import EventRegistry, registry
from acci.domain.tenant import Tenant, TenantState, TenantStatus
from acci.domain.user import User, UserState, UserStatus

__all__ = [
    "AGGREGATES",
    "COMMAND_TYPES",
    "Command",
    "CommandError",
    "CommandValidationError",
    "ConcurrencyError",
    "DomainError",
    "DomainEvent",
    "EventRegistry",
    "EventSourced",
    "PersistenceError",
    "Tenant",
    "TenantState",
    "TenantStatus",
    "UnknownEventTypeError",
    "User",
    "UserState",
    "UserStatus",
    "aggregate_for_command",
    "aggregate_id_of",
    "parse_command",
    "registry",
    "validation_error_from_pydantic",
]
