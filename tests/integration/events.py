"""Event types used only by the event-store tests, in a registry of their own."""

from __future__ import annotations

from typing import Any, ClassVar

from acci.domain.events import DomainEvent
from acci.domain.registry import EventRegistry
from acci.eventstore.records import NewEvent

registry = EventRegistry()


@registry.register
class Noted(DomainEvent):
    """A line of text, the simplest event there is."""

    event_type: ClassVar[str] = "Noted"
    event_version: ClassVar[int] = 1
    text: str


@registry.register
class Counted(DomainEvent):
    """A number; version 2 (v1 stored it as ``n``)."""

    event_type: ClassVar[str] = "Counted"
    event_version: ClassVar[int] = 2
    value: int


@registry.register_upcaster("Counted", 1)
def _counted_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"value": data["n"]}


def noted(text: str = "hello", **metadata: Any) -> NewEvent:
    """A Noted event ready to append."""
    return NewEvent("Noted", 1, {"text": text}, metadata)


def counted(value: int) -> NewEvent:
    """A Counted event ready to append."""
    return NewEvent("Counted", 2, {"value": value})
