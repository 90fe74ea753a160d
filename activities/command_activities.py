"""The command workflow's activities: validate, handle (load, decide, append), publish."""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity

from activities.commands import CommandHandler
from activities.errors import application_error
from domain import COMMAND_TYPES, aggregate_for_command, parse_command
from domain.command import Command
from domain.errors import CommandError
from domain.identifiers import validate_tenant_id
from eventstore.publisher import EventPublisher
from eventstore.store import EventStore
from workflows.models import (
    CommandInput,
    CommandResult,
    PublishInput,
    PublishResult,
    ValidatedCommand,
)

log = logging.getLogger(__name__)


def parse(command: CommandInput) -> Command:
    """The typed command in ``command``; a tenant command's tenant defaults to the sender's."""
    validate_tenant_id(command.tenant_id)
    payload = dict(command.payload)
    command_class = COMMAND_TYPES.get(command.command_type)
    if command_class is not None and "tenant_id" in command_class.model_fields:
        payload.setdefault("tenant_id", command.tenant_id)
    return parse_command(command.command_type, payload)


class CommandActivities:
    """Activities holding their clients; each is safe to run twice."""

    def __init__(
        self, *, handler: CommandHandler, store: EventStore, publisher: EventPublisher
    ) -> None:
        self._handler = handler
        self._store = store
        self._publisher = publisher

    @activity.defn(name="ValidateCommand")
    async def validate(self, command: CommandInput) -> ValidatedCommand:
        """Parse and check the command; bad input fails for good (non-retryable)."""
        try:
            parsed = parse(command)
            cls = aggregate_for_command(parsed)
        except CommandError as e:
            raise application_error(e) from e
        return ValidatedCommand(aggregate_id=parsed.aggregate_id, aggregate_type=cls.aggregate_type)

    @activity.defn(name="HandleCommand")
    async def handle(self, command: CommandInput) -> CommandResult:
        """Load, decide and append; a re-run returns the first run's stored result."""
        try:
            parsed = parse(command)
            outcome = await self._handler.handle(
                command.tenant_id,
                parsed,
                command_id=command.command_id,
                metadata=command.metadata,
            )
        except CommandError as e:
            raise application_error(e) from e
        return CommandResult(
            command_id=command.command_id,
            tenant_id=outcome.tenant_id,
            aggregate_id=outcome.aggregate_id,
            aggregate_type=outcome.aggregate_type,
            stream_version=outcome.stream_version,
            event_ids=list(outcome.event_ids),
            global_positions=[p.global_position for p in outcome.positions],
            positions=[str(p) for p in outcome.positions],
            duplicate=outcome.duplicate,
        )

    @activity.defn(name="PublishEvents")
    async def publish(self, request: PublishInput) -> PublishResult:
        """Publish the command's stored events to RabbitMQ, confirmed; retried until done."""
        events = await self._store.command_events(request.tenant_id, request.command_id)
        try:
            # pika is blocking: keep it off the event loop.
            await asyncio.to_thread(
                self._publisher.publish_events, events, causation_id=request.causation_id
            )
        except CommandError as e:
            raise application_error(e) from e
        log.info(
            "published events",
            extra={"command_id": str(request.command_id), "count": len(events)},
        )
        return PublishResult(published=len(events))
