"""ACCI's pure domain: aggregates, commands, events, the event registry and domain errors.

Importing this package registers every Tenant and User event in ``registry`` and adds the
built-in tenancy application (``tenancy.py``) to the catalogue.
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
from acci.domain.rules import RelatedAggregate, requires_active_tenant
from acci.domain.tenancy import NAME as TENANCY
from acci.domain.tenant import Tenant, TenantState, TenantStatus
from acci.domain.user import User, UserState, UserStatus

__all__ = [
    "AGGREGATES",
    "COMMAND_TYPES",
    "TENANCY",
    "Command",
    "CommandError",
    "CommandValidationError",
    "ConcurrencyError",
    "DomainError",
    "DomainEvent",
    "EventRegistry",
    "EventSourced",
    "PersistenceError",
    "RelatedAggregate",
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
    "requires_active_tenant",
    "validation_error_from_pydantic",
]
