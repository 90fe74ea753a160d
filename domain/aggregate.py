"""The event-sourced aggregate base: state folded from events, pure decide and evolve."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Generic, Self, TypeVar

import pydantic
from pydantic import BaseModel

from acci.domain.command import Command
from acci.domain.errors import CommandValidationError, validation_error_from_pydantic
from acci.domain.events import DomainEvent
from acci.domain.identifiers import validate_aggregate_id, validate_tenant_id
from acci.domain.principals import Principal

StateT = TypeVar("StateT", bound=BaseModel)
CommandT = TypeVar("CommandT", bound=Command)


class EventSourced(ABC, Generic[StateT, CommandT]):
    """An aggregate instance: its state, its stream version and the events not yet stored.

    Subclasses supply the pure parts as static methods: ``initial_state``, ``decide`` (command
    and state to events, raising ``DomainError``) and ``evolve`` (state and event to the next
    state). Everything else (clock, ids, storage) stays outside.
    """

    aggregate_type: ClassVar[str]
    # Bumped whenever the state model changes shape, so older snapshots are ignored, not misread.
    state_schema_version: ClassVar[int]
    # The command classes ``decide`` accepts.
    command_types: ClassVar[tuple[type[Command], ...]]

    def __init__(
        self,
        aggregate_id: str,
        tenant_id: str,
        *,
        state: StateT | None = None,
        version: int = 0,
    ) -> None:
        if version < 0:
            raise ValueError(f"version must be >= 0, got {version}")
        self._aggregate_id = validate_aggregate_id(aggregate_id)
        self._tenant_id = validate_tenant_id(tenant_id)
        self._state = self.initial_state() if state is None else state
        self._version = version
        self._uncommitted: list[DomainEvent] = []

    @staticmethod
    @abstractmethod
    def initial_state() -> StateT:
        """The state before the first event."""

    @staticmethod
    @abstractmethod
    def decide(command: CommandT, state: StateT) -> list[DomainEvent]:
        """The events ``command`` produces in ``state``; raises ``DomainError`` to refuse it."""

    @staticmethod
    @abstractmethod
    def evolve(state: StateT, event: DomainEvent) -> StateT:
        """The state after ``event``."""

    @staticmethod
    def authorize_on_state(command: CommandT, state: StateT, principal: Principal) -> None:
        """Refuse, with ``AuthorizationError``, a command that its sender may send in general
        but not to this aggregate as it is now (an owner's account, say). The command policy
        (``domain/authorization.py``) has decided before anything was loaded; this is only for
        rules that depend on the target's state. By default there are none."""

    @classmethod
    def from_events(
        cls,
        aggregate_id: str,
        tenant_id: str,
        events: Iterable[DomainEvent],
        *,
        state: StateT | None = None,
        version: int = 0,
    ) -> Self:
        """An aggregate rebuilt from stored ``events``, on top of a snapshot ``state`` if given."""
        aggregate = cls(aggregate_id, tenant_id, state=state, version=version)
        for event in events:
            aggregate.apply_event(event)
        return aggregate

    @classmethod
    def state_from_json(cls, data: dict[str, Any]) -> StateT:
        """The state stored in a snapshot by ``state_to_json``."""
        state_class = type(cls.initial_state())
        try:
            return state_class.model_validate(data)
        except pydantic.ValidationError as e:
            raise validation_error_from_pydantic(
                e, f"{cls.aggregate_type} state (schema {cls.state_schema_version})"
            ) from e

    @property
    def aggregate_id(self) -> str:
        """This aggregate's id, unique within its tenant."""
        return self._aggregate_id

    @property
    def tenant_id(self) -> str:
        """The tenant this aggregate belongs to."""
        return self._tenant_id

    @property
    def state(self) -> StateT:
        """The current state, including uncommitted events."""
        return self._state

    @property
    def version(self) -> int:
        """The number of events applied: the stream version, including uncommitted events."""
        return self._version

    @property
    def committed_version(self) -> int:
        """The stream version before the uncommitted events: their append's expected version."""
        return self._version - len(self._uncommitted)

    @property
    def uncommitted_events(self) -> tuple[DomainEvent, ...]:
        """The events produced by ``handle`` since the last ``clear_uncommitted_events``."""
        return tuple(self._uncommitted)

    def clear_uncommitted_events(self) -> None:
        """Forget the uncommitted events, once they are stored."""
        self._uncommitted.clear()

    def apply_event(self, event: DomainEvent) -> None:
        """Fold one stored event into the state."""
        self._state = self.evolve(self._state, event)
        self._version += 1

    def handle(self, command: CommandT) -> list[DomainEvent]:
        """Decide on ``command``, apply its events and keep them as uncommitted.

        All or nothing: if deciding or applying fails, state and version are unchanged.
        """
        if not isinstance(command, self.command_types):
            raise CommandValidationError(
                f"{self.aggregate_type} cannot handle {type(command).__qualname__}"
            )
        if command.aggregate_id != self._aggregate_id:
            raise CommandValidationError(
                f"{command.command_type} is addressed to {self.aggregate_type}"
                f" {command.aggregate_id!r}, not {self._aggregate_id!r}"
            )
        return self.record(self.decide(command, self._state))

    def record(self, events: list[DomainEvent]) -> list[DomainEvent]:
        """Apply events decided for this aggregate and keep them as uncommitted.

        ``handle`` records what a command decided; a rule across aggregates (a user's seat on
        its tenant) records what it decided here. All or nothing, like ``handle``.
        """
        state = self._state
        for event in events:
            state = self.evolve(state, event)
        self._state = state
        self._version += len(events)
        self._uncommitted.extend(events)
        return list(events)

    def state_to_json(self) -> dict[str, Any]:
        """The state as JSON-ready data, for a snapshot."""
        return self._state.model_dump(mode="json")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._aggregate_id!r}, tenant={self._tenant_id!r},"
            f" version={self._version}, uncommitted={len(self._uncommitted)})"
        )
