"""Handling one command: load the aggregate, decide, append with the version it was loaded at."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain import Tenant, aggregate_for_command
from domain.command import Command
from domain.errors import CommandValidationError
from domain.tenant import ensure_tenant_active
from eventstore.errors import ConcurrencyError
from eventstore.records import AppendResult, Position
from eventstore.repository import AggregateRepository
from eventstore.store import EventStore

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

    @classmethod
    def stored(cls, aggregate_type: str, result: AppendResult) -> CommandOutcome:
        return cls(
            result.tenant_id,
            result.aggregate_id,
            aggregate_type,
            result.stream_version,
            result.event_ids,
            result.positions,
            result.duplicate,
        )


class CommandHandler:
    """Runs a command against its aggregate; safe to run twice with the same command id."""

    def __init__(
        self, store: EventStore, repository: AggregateRepository, *, max_attempts: int = 5
    ) -> None:
        self._store = store
        self._repository = repository
        self._max_attempts = max_attempts

    async def handle(
        self,
        tenant_id: str,
        command: Command,
        *,
        command_id: uuid.UUID,
        metadata: Mapping[str, Any] | None = None,
    ) -> CommandOutcome:
        """Decide and append; a concurrency conflict reloads and decides again (bounded)."""
        cls = aggregate_for_command(command)
        named = getattr(command, "tenant_id", tenant_id)  # tenant commands name their tenant
        if named != tenant_id:
            raise CommandValidationError(
                f"{command.command_type} names tenant {named!r}"
                f" but was sent for tenant {tenant_id!r}"
            )
        # A command already stored returns its first outcome: deciding it again against the
        # state it produced would refuse it ("already exists") or double it.
        earlier = await self._store.command_result(tenant_id, command_id)
        if earlier is not None:
            return CommandOutcome.stored(cls.aggregate_type, earlier)
        if cls is not Tenant:
            # Work inside a tenant needs the tenant to accept it (read, not locked: a suspension
            # racing this command lands before or after it, both are valid histories).
            tenant = await self._repository.load(Tenant, tenant_id, tenant_id)
            ensure_tenant_active(tenant_id, tenant.state)
        meta = {"correlation_id": str(command_id), "command_type": command.command_type}
        meta.update(metadata or {})
        for attempt in range(1, self._max_attempts + 1):
            aggregate = await self._repository.load(cls, tenant_id, command.aggregate_id)
            aggregate.handle(command)
            try:
                result = await self._repository.save(
                    aggregate, command_id=command_id, metadata=meta
                )
            except ConcurrencyError:
                if attempt == self._max_attempts:
                    raise
                log.info(
                    "concurrency conflict, deciding again",
                    extra={"command_id": str(command_id), "attempt": attempt},
                )
                continue
            if result is None:  # nothing to change: an idempotent no-op
                return CommandOutcome(
                    tenant_id, aggregate.aggregate_id, cls.aggregate_type, aggregate.version, (), ()
                )
            return CommandOutcome.stored(cls.aggregate_type, result)
        raise AssertionError("unreachable")  # pragma: no cover
