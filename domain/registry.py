"""The event registry: stored type names to event classes, with the upcasters beside them."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

import pydantic

from acci.domain.errors import (
    CommandValidationError,
    UnknownEventTypeError,
    validation_error_from_pydantic,
)
from acci.domain.events import DomainEvent
from acci.domain.identifiers import TYPE_NAME_PATTERN

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the stored JSON of one version of an event type into the next version's JSON."""

EventClassT = TypeVar("EventClassT", bound=type[DomainEvent])
UpcasterT = TypeVar("UpcasterT", bound=Upcaster)

_TYPE_NAME: Final = re.compile(TYPE_NAME_PATTERN)


class EventRegistry:
    """Knows every event type: its class, its current version and how to upcast older ones."""

    def __init__(self) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: EventClassT) -> EventClassT:
        """Register an event class under its ``event_type``; usable as a class decorator."""
        # Only the class's own attribute counts: an inherited one would alias the parent's type.
        event_type = cls.__dict__.get("event_type")
        if not isinstance(event_type, str) or not _TYPE_NAME.fullmatch(event_type):
            raise TypeError(
                f"{cls.__qualname__} must define its own event_type matching {TYPE_NAME_PATTERN},"
                f" got {event_type!r}"
            )
        version = getattr(cls, "event_version", None)  # no default: every event says
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise TypeError(
                f"{cls.__qualname__} must define event_version, an int >= 1, got {version!r}"
            )
        if event_type in self._classes:
            raise ValueError(
                f"event type {event_type!r} is already registered"
                f" (by {self._classes[event_type].__qualname__})"
            )
        self._classes[event_type] = cls
        return cls

    def register_upcaster(
        self, event_type: str, from_version: int
    ) -> Callable[[UpcasterT], UpcasterT]:
        """Decorator registering the upcaster from ``from_version`` to ``from_version + 1``.

        The event class must be registered first, so its current version bounds the chain.
        An upcaster receives a private copy of the stored data and may change it.
        """
        current = self.current_version(event_type)
        if not 1 <= from_version < current:
            raise ValueError(
                f"upcaster for {event_type!r} from version {from_version}: must be between 1 and"
                f" {current - 1} (the current version is {current})"
            )
        key = (event_type, from_version)
        if key in self._upcasters:
            raise ValueError(
                f"upcaster for {event_type!r} from version {from_version} already exists"
            )

        def decorate(upcaster: UpcasterT) -> UpcasterT:
            self._upcasters[key] = upcaster
            return upcaster

        return decorate

    def has_upcaster(self, event_type: str, from_version: int) -> bool:
        """Whether an upcaster from ``from_version`` of ``event_type`` is registered."""
        return (event_type, from_version) in self._upcasters

    def event_class(self, event_type: str) -> type[DomainEvent]:
        """The class registered under ``event_type``."""
        try:
            return self._classes[event_type]
        except KeyError:
            raise UnknownEventTypeError(event_type) from None

    def current_version(self, event_type: str) -> int:
        """The version new events of ``event_type`` are written with."""
        return self.event_class(event_type).event_version

    def is_known(self, event_type: str) -> bool:
        """Whether ``event_type`` is registered."""
        return event_type in self._classes

    def event_types(self) -> frozenset[str]:
        """Every registered event type name."""
        return frozenset(self._classes)

    def upcast(
        self, event_type: str, event_version: int, data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """``data`` stored as ``event_version`` brought up to the current version.

        The input is never changed. At the current version it is returned as is (not copied):
        this runs for every event read.
        """
        cls = self._classes.get(event_type)
        if cls is None:
            raise UnknownEventTypeError(event_type, event_version)
        current = cls.event_version
        if event_version == current:
            return current, data
        if event_version > current:
            raise UnknownEventTypeError(
                event_type, event_version, detail=f"newer than the current version {current}"
            )
        if event_version < 1:
            raise UnknownEventTypeError(event_type, event_version, detail="versions start at 1")
        # Deep, because an upcaster may reshape nested values too.
        upcast = copy.deepcopy(data)
        for version in range(event_version, current):
            upcaster = self._upcasters.get((event_type, version))
            if upcaster is None:
                raise UnknownEventTypeError(
                    event_type,
                    event_version,
                    detail=f"no upcaster from version {version} to {version + 1}",
                )
            try:
                upcast = upcaster(upcast)
            except (KeyError, TypeError, ValueError) as e:
                raise CommandValidationError(
                    f"cannot upcast {event_type} from version {version} to {version + 1}:"
                    f" {type(e).__name__}: {e}"
                ) from e
        return current, upcast

    def encode(self, event: DomainEvent) -> tuple[str, int, dict[str, Any]]:
        """``(event_type, current version, JSON-ready data)`` for storing ``event``."""
        cls = type(event)
        event_type = getattr(cls, "event_type", cls.__qualname__)
        if self._classes.get(event_type) is not cls:
            raise UnknownEventTypeError(
                event_type, detail=f"class {cls.__qualname__} is not the registered one"
            )
        return event_type, cls.event_version, event.model_dump(mode="json")

    def decode(self, event_type: str, event_version: int, data: dict[str, Any]) -> DomainEvent:
        """The event stored as ``data`` at ``event_version``, upcast and validated."""
        version, current_data = self.upcast(event_type, event_version, data)
        try:
            return self._classes[event_type].model_validate(current_data)
        except pydantic.ValidationError as e:
            raise validation_error_from_pydantic(
                e, f"{event_type} event (version {version})"
            ) from e

    def decode_json(self, event_type: str, event_version: int, text: str | bytes) -> DomainEvent:
        """``decode`` of the stored JSON text rather than of its parsed dict.

        At the current version pydantic parses and validates the text in one pass, with no dict
        in between: a third less CPU per event than ``json.loads`` and ``decode``, on the path
        every aggregate load takes. Older versions are parsed, upcast and decoded as usual.
        """
        cls = self._classes.get(event_type)
        if cls is None or cls.event_version != event_version:
            try:
                data = json.loads(text)
            except ValueError as e:
                raise CommandValidationError(
                    f"invalid {event_type} event (version {event_version}): not JSON: {e}"
                ) from e
            return self.decode(event_type, event_version, data)
        try:
            return cls.model_validate_json(text)
        except pydantic.ValidationError as e:
            raise validation_error_from_pydantic(
                e, f"{event_type} event (version {event_version})"
            ) from e


registry: Final = EventRegistry()
"""The registry every Tenant and User event is registered in (on ``import domain``)."""
