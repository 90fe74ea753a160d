"""Projections: pure functions from one event to the read-model row changes it causes.

A projection does no I/O. The runner (``readmodels/runner.py``) reads events in the gap-free
global order (upcast to their current versions), asks the projection for each event's changes,
and applies them with the projection's checkpoint in one transaction.

Events a projection does not handle yield no changes: that is the documented answer for event
types it does not know (another aggregate's, or a type added later), and the checkpoint still
moves past them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from acci.domain.events import DomainEvent
from acci.domain.registry import EventRegistry
from acci.domain.registry import registry as default_registry
from acci.eventstore.records import RecordedEvent
from acci.readmodels.changes import Change
from acci.readmodels.failure_policy import FailurePolicy


class Projection(ABC):
    """Turns one event into changes to the projection's own tables; pure."""

    name: ClassVar[str]
    # The read_models tables this projection writes; a change to any other is refused.
    tables: ClassVar[frozenset[str]]
    on_failure: ClassVar[FailurePolicy] = "pause"

    def __init__(self, *, registry: EventRegistry = default_registry) -> None:
        self._registry = registry

    @abstractmethod
    def handle_event(self, event: RecordedEvent) -> list[Change]:
        """The changes ``event`` causes; ``[]`` for an event this projection does not handle."""

    def decode(self, event: RecordedEvent) -> DomainEvent:
        """The typed domain event (the data is already upcast; this validates it)."""
        return self._registry.decode(event.event_type, event.event_version, event.data)
