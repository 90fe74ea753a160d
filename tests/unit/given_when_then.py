"""Given stored events, when a command is handled, then these events (or this error)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from acci.domain import DomainEvent, EventSourced, Tenant, aggregate_for_command
from acci.domain.command import Command
from acci.domain.registry import EventRegistry
from acci.domain.registry import registry as default_registry

# User commands carry no tenant id (it comes with the envelope); this one stands in for it.
TENANT_ID = "acme"

ErrorT = TypeVar("ErrorT", bound=Exception)


def given(
    events: Sequence[DomainEvent] = (),
    *,
    aggregate: type[EventSourced[Any, Any]] | None = None,
    registry: EventRegistry = default_registry,
) -> Given:
    """Start a scenario from an aggregate's stored history (oldest first).

    ``aggregate`` and ``registry``: an application's aggregate and the registry of its events,
    for one not installed in this process (default: the catalogue's aggregate of the command,
    and the default registry).
    """
    return Given(tuple(events), aggregate, registry)


@dataclass(frozen=True)
class Given:
    """A stored history, waiting for a command."""

    history: tuple[DomainEvent, ...]
    aggregate: type[EventSourced[Any, Any]] | None = None
    registry: EventRegistry = default_registry

    def when(self, command: Command) -> When:
        """Handle ``command`` on the aggregate the history belongs to."""
        return When(self.history, command, self.aggregate, self.registry)


@dataclass(frozen=True)
class When:
    """A history and a command, waiting for the expected outcome."""

    history: tuple[DomainEvent, ...]
    command: Command
    aggregate: type[EventSourced[Any, Any]] | None = None
    registry: EventRegistry = default_registry

    def _load(self) -> EventSourced[Any, Any]:
        aggregate_class = self.aggregate or aggregate_for_command(self.command)
        aggregate_id = self.command.aggregate_id
        tenant_id = aggregate_id if aggregate_class is Tenant else TENANT_ID
        return aggregate_class.from_events(aggregate_id, tenant_id, self.history)

    def then(self, expected: Sequence[DomainEvent]) -> EventSourced[Any, Any]:
        """Assert the command produced exactly ``expected``; return the aggregate after it."""
        aggregate = self._load()
        produced = aggregate.handle(self.command)
        assert produced == list(expected)
        assert aggregate.uncommitted_events == tuple(expected)
        assert aggregate.version == len(self.history) + len(expected)
        # Whatever a command produces must survive the trip through the store.
        for event in produced:
            assert self.registry.decode(*self.registry.encode(event)) == event
        return aggregate

    def then_nothing_happens(self) -> EventSourced[Any, Any]:
        """Assert the command was an accepted no-op: no events, no error."""
        return self.then([])

    def then_raises(self, error_type: type[ErrorT], *, reason: str | None = None) -> ErrorT:
        """Assert the command is refused with ``error_type`` (and ``reason``), changing nothing."""
        aggregate = self._load()
        state_before, version_before = aggregate.state, aggregate.version
        with pytest.raises(error_type) as info:
            aggregate.handle(self.command)
        if reason is not None:
            assert getattr(info.value, "reason", None) == reason, str(info.value)
        assert aggregate.state == state_before
        assert aggregate.version == version_before
        assert aggregate.uncommitted_events == ()
        return info.value
