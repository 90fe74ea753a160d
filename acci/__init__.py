"""ACCI: durable CQRS / event sourcing on Temporal, PostgreSQL and RabbitMQ.

The names in ``__all__`` are ACCI's public API: what an application's own package uses to declare
its aggregates, commands, events, upcasters, projections and queries. They follow semantic
versioning; everything else (``acci.eventstore``, ``acci.workers``, …) is internal and may
change in any release.

Each name is imported on first use, so ``import acci`` costs nothing (a Temporal workflow
sandbox imports this package once per run).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_PUBLIC: dict[str, str] = {
    # An application: its whole declaration, installed by every ACCI process that finds it.
    "Application": "acci.readmodels.application",
    "ApplicationDeclarationError": "acci.readmodels.application",
    # A read model: its row types, DDL per version, projection and queries.
    "ReadModel": "acci.readmodels.read_model",
    # Rules across aggregates (a command that needs, or also changes, another aggregate).
    "RelatedAggregate": "acci.domain.rules",
    "requires_active_tenant": "acci.domain.rules",
    # Aggregates, commands and events (pure: decide/evolve, no I/O).
    "EventSourced": "acci.domain.aggregate",
    "Command": "acci.domain.command",
    "DomainEvent": "acci.domain.events",
    # Event types by name and version, and the upcasters between versions.
    "EventRegistry": "acci.domain.registry",
    "registry": "acci.domain.registry",
    # The errors a domain raises.
    "CommandError": "acci.domain.errors",
    "CommandValidationError": "acci.domain.errors",
    "DomainError": "acci.domain.errors",
    "UnknownEventTypeError": "acci.domain.errors",
    # Projections: a stored event in, row changes out (applied exactly once by ACCI).
    "Projection": "acci.readmodels.projections",
    "RecordedEvent": "acci.eventstore.records",
    "Change": "acci.readmodels.changes",
    "Upsert": "acci.readmodels.changes",
    "Update": "acci.readmodels.changes",
    "Delete": "acci.readmodels.changes",
    # Queries and their answers, and the errors a query handler raises.
    "Query": "acci.readmodels.queries",
    "TenantQuery": "acci.readmodels.queries",
    "Page": "acci.readmodels.queries",
    "QueryError": "acci.readmodels.errors",
    "QueryValidationError": "acci.readmodels.errors",
    "NotFoundError": "acci.readmodels.errors",
}

# The same names, written out for type checkers and linters (a test keeps the two equal).
__all__ = [
    "Application",
    "ApplicationDeclarationError",
    "Change",
    "Command",
    "CommandError",
    "CommandValidationError",
    "Delete",
    "DomainError",
    "DomainEvent",
    "EventRegistry",
    "EventSourced",
    "NotFoundError",
    "Page",
    "Projection",
    "Query",
    "QueryError",
    "QueryValidationError",
    "ReadModel",
    "RecordedEvent",
    "RelatedAggregate",
    "TenantQuery",
    "UnknownEventTypeError",
    "Update",
    "Upsert",
    "registry",
    "requires_active_tenant",
]

if TYPE_CHECKING:
    from acci.domain.aggregate import EventSourced
    from acci.domain.command import Command
    from acci.domain.errors import (
        CommandError,
        CommandValidationError,
        DomainError,
        UnknownEventTypeError,
    )
    from acci.domain.events import DomainEvent
    from acci.domain.registry import EventRegistry, registry
    from acci.domain.rules import RelatedAggregate, requires_active_tenant
    from acci.eventstore.records import RecordedEvent
    from acci.readmodels.application import Application, ApplicationDeclarationError
    from acci.readmodels.changes import Change, Delete, Update, Upsert
    from acci.readmodels.errors import NotFoundError, QueryError, QueryValidationError
    from acci.readmodels.projections import Projection
    from acci.readmodels.queries import Page, Query, TenantQuery
    from acci.readmodels.read_model import ReadModel


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'acci' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
