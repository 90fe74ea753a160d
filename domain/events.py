"""The base class of every domain event."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class DomainEvent(BaseModel):
    """An immutable fact, carrying only its payload.

    Aggregate id, tenant id, sequence number and timestamp live in the event store's envelope,
    so the same payload can be stored, published and projected without duplicating them.
    ``event_type`` is the stable stored name (never derived from the class name, so renaming a
    class cannot orphan stored events); ``event_version`` is the current schema version, and
    older stored versions are brought up to it by the registry's upcasters.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    event_version: ClassVar[int]
