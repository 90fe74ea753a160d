"""Handling one command: load the aggregate, decide, append with the version it was loaded at."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from acci.domain import EventSourced, aggregate_for_command
from acci.domain.catalogue import rules_for
from acci.domain.command import Command
from acci.domain.errors import (
    AuthorizationError,
    CommandError,
    CommandValidationError,
    DomainError,
    HandlerError,
)
from acci.domain.principals import Principal
from acci.eventstore.errors import CommandIdReusedError, ConcurrencyError
from acci.eventstore.records import AppendResult, CommandRecord, Position, RecordedEvent
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.store import EventStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What a command did: the stream's version after it and the events it stored."""

    tenant_id: str
    aggregate_id: str
    aggregate_type: str
    stream_version: int
    event_ids: tuple[uuid.UUID, ...]
    positions: tuple[Position, ...]
    # The command had been handled before; this is the first run's outcome.
    duplicate: bool = False
    # Every event this run stored, in every stream, in global order (empty for a duplicate:
    # those were stored before, and are read back where needed).
    events: tuple[RecordedEvent, ...] = ()

    @classmethod
    def stored(
        cls, aggregate_type: str, result: AppendResult, *, others: Sequence[AppendResult] = ()
    ) -> CommandOutcome:
        """The outcome of ``result`` (the addressed stream's), with ``others``' events too."""
        events: tuple[RecordedEvent, ...] = ()
        if not result.duplicate:
            every = (e for r in (result, *others) for e in r.events)
            events = tuple(sorted(every, key=lambda e: e.position))
        return cls(
            result.tenant_id,
            result.aggregate_id,
            aggregate_type,
            result.stream_version,
            result.event_ids,
            result.positions,
            result.duplicate,
            events,
        )


class CommandHandler:
    """Runs a command against its aggregate; safe to run twice with the same command id."""

    def __init__(
        self,
        store: EventStore,
        repository: AggregateRepository,
        *,
        conflict_budget_seconds: float = 10.0,
        backoff_initial_seconds: float = 0.005,
        backoff_max_seconds: float = 0.5,
        on_conflict: Callable[[str], None] | None = None,
    ) -> None:
        """``on_conflict`` is called with the command type each time a command lost a race on
        its stream and is about to reload and decide again (the worker counts them)."""
        self._on_conflict = on_conflict
        self._store = store
        self._repository = repository
        self._budget = conflict_budget_seconds
        self._backoff_initial = backoff_initial_seconds
        self._backoff_max = backoff_max_seconds

    async def handle(
        self,
        tenant_id: str,
        command: Command,
        *,
        command_id: uuid.UUID,
        metadata: Mapping[str, Any] | None = None,
        principal: Principal | None = None,
    ) -> CommandOutcome:
        """Decide and append; a concurrency conflict reloads and decides again.

        ``principal``, authorized by the command policy already, is checked again against the
        loaded aggregate (``EventSourced.authorize_on_state``) before anything else is decided;
        without one (ACCI's own callers in process) there is nothing more to check.

        Conflicts are retried with jittered exponential backoff until the time budget is spent:
        a burst of commands on one aggregate (a backlog released after an outage, say) then
        goes through one after another instead of exhausting a fixed number of attempts.
        """
        cls = aggregate_for_command(command)
        named = getattr(command, "tenant_id", tenant_id)  # tenant commands name their tenant
        if named != tenant_id:
            raise CommandValidationError(
                f"{command.command_type} names tenant {named!r}"
                f" but was sent for tenant {tenant_id!r}"
            )
        fingerprint = command.fingerprint(tenant_id)
        # Decided first, asked about afterwards: a command stored before (a re-send, or a retry
        # of an attempt whose publish failed) is found by the append itself, whose command row
        # collides, or else it fails or decides nothing against the state it produced ("already
        # exists"). Only then is the store asked for its first outcome, which stands; a first
        # send, nearly every command, saves that round trip.
        try:
            outcome = await self._decide_until_stored(
                cls, tenant_id, command, command_id, metadata, fingerprint, principal
            )
        except (
            DomainError,
            AuthorizationError,
            CommandValidationError,
            CommandIdReusedError,
            HandlerError,
        ):
            first = await self._first_outcome(cls, tenant_id, command, command_id, fingerprint)
            if first is None:
                raise
            return first
        if outcome.event_ids and not outcome.duplicate:
            return outcome
        # A duplicate, or an idempotent no-op (unless this command was stored before).
        first = await self._first_outcome(cls, tenant_id, command, command_id, fingerprint)
        return outcome if first is None else first

    async def _first_outcome(
        self,
        cls: type[EventSourced[Any, Any]],
        tenant_id: str,
        command: Command,
        command_id: uuid.UUID,
        fingerprint: str,
    ) -> CommandOutcome | None:
        """The outcome of this command's earlier send, if one stored events (None if none did);
        ``CommandIdReusedError`` if the id was used for another command, in any tenant."""
        earlier = await self._store.command_record(command_id, tenant_id)
        if earlier is not None:
            return await self._earlier(earlier, cls.aggregate_type, tenant_id, command, fingerprint)
        if await self._store.command_id_taken(command_id):  # by another tenant's command
            raise CommandIdReusedError(command_id)
        return None

    async def _decide_until_stored(
        self,
        cls: type[EventSourced[Any, Any]],
        tenant_id: str,
        command: Command,
        command_id: uuid.UUID,
        metadata: Mapping[str, Any] | None,
        fingerprint: str,
        principal: Principal | None,
    ) -> CommandOutcome:
        """Decide and append, again after each concurrency conflict while the budget lasts."""
        # The envelope is the system's to write: clients cannot set these (activities.models
        # refuses them), and a command's events are caused by the command.
        meta = {
            **(metadata or {}),
            "correlation_id": str(command_id),
            "causation_id": str(command_id),
            "command_type": command.command_type,
        }
        deadline = time.monotonic() + self._budget
        for attempt in itertools.count(1):
            try:
                return await self._decide_and_append(
                    cls, tenant_id, command, command_id, meta, fingerprint, principal
                )
            except ConcurrencyError:
                # Full jitter: racing writers spread out instead of colliding again in step.
                cap = min(self._backoff_max, self._backoff_initial * 2**attempt)
                delay = random.uniform(0, cap)  # jitter, not a secret
                if time.monotonic() + delay >= deadline:
                    raise
                log.info("concurrency conflict, deciding again", extra={"attempt": attempt})
                if self._on_conflict is not None:
                    self._on_conflict(command.command_type)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _earlier(
        self,
        earlier: CommandRecord,
        aggregate_type: str,
        tenant_id: str,
        command: Command,
        fingerprint: str,
    ) -> CommandOutcome:
        """The stored outcome of this command sent before, or a refusal if its id named another
        command (which says nothing about that one). A command stored under the earlier
        fingerprint (defaults filled in, ``Command.fingerprints``) is recognised too."""
        same = any(
            earlier.may_be(
                tenant_id, aggregate_type, command.aggregate_id, command.command_type, known
            )
            for known in (fingerprint, *command.fingerprints(tenant_id)[1:])
        )
        result = await self._store.command_result(tenant_id, earlier.command_id) if same else None
        if result is None:
            raise CommandIdReusedError(earlier.command_id)
        return CommandOutcome.stored(aggregate_type, result)

    async def _decide_and_append(
        self,
        cls: type[EventSourced[Any, Any]],
        tenant_id: str,
        command: Command,
        command_id: uuid.UUID,
        metadata: Mapping[str, Any],
        fingerprint: str,
        principal: Principal | None,
    ) -> CommandOutcome:
        """Load, decide and append once; a ConcurrencyError means another writer came first.

        The command's related aggregates (``domain/rules.py``, declared by its application) are
        loaded and checked after the target and before deciding, and written with it where
        their rule records events on them. A change racing this command on one of them lands
        before or after it (both valid histories), unless this command writes to it too, where
        the two collide.
        """
        aggregate = await self._repository.load(cls, tenant_id, command.aggregate_id)
        if principal is not None:  # a sender refused by the target's state is denied first
            with _application_code(command, "authorizing it on the aggregate's state"):
                cls.authorize_on_state(command, aggregate.state, principal)
        related = []
        for rule in rules_for(cls):
            other = await self._repository.load(
                rule.aggregate, tenant_id, rule.aggregate_id(tenant_id, command)
            )
            if rule.check is not None:
                with _application_code(command, f"checking {rule.aggregate.aggregate_type}"):
                    rule.check(tenant_id, other.state)
            related.append((rule, other))
        with _application_code(command, "deciding"):
            events = aggregate.handle(command)
        changed: list[EventSourced[Any, Any]] = [aggregate]
        for rule, other in related:
            if rule.follow_up is not None:
                with _application_code(command, f"following up on {rule.aggregate.aggregate_type}"):
                    more = rule.follow_up(tenant_id, other.state, aggregate.aggregate_id, events)
                    if more:
                        other.record(more)
                        changed.append(other)
        results = await self._repository.save_all(
            changed, command_id=command_id, metadata=metadata, fingerprint=fingerprint
        )
        if not results:  # nothing to change: an idempotent no-op
            return CommandOutcome(
                tenant_id, aggregate.aggregate_id, cls.aggregate_type, aggregate.version, (), ()
            )
        return CommandOutcome.stored(cls.aggregate_type, results[0], others=results[1:])


@contextmanager
def _application_code(command: Command, doing: str) -> Iterator[None]:
    """The application's own code runs in here: a command error it raises is its answer; any
    other exception is a fault in that code, which retrying the command cannot mend, so it ends
    the command (``HandlerError``, not retried) instead of failing every attempt for ever. The
    traceback goes to the worker's log."""
    try:
        yield
    except CommandError:
        raise
    except Exception as e:
        log.exception("the application's code failed", extra={"command_type": command.command_type})
        raise HandlerError(
            f"{command.command_type} failed while {doing}: {type(e).__name__}: {e} (a fault in"
            " the application's code: the command is not retried; the worker's log has the"
            " traceback)"
        ) from e
