"""The command workflow's activities: validate, handle (load, decide, append), publish."""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity

from acci.activities.command_handler import CommandHandler, CommandOutcome
from acci.activities.errors import application_error
from acci.activities.models import CommandInput, CommandResult
from acci.domain import COMMAND_TYPES, aggregate_for_command, parse_command
from acci.domain.command import Command
from acci.domain.errors import CommandError
from acci.domain.identifiers import validate_tenant_id
from acci.eventstore.errors import EventStoreError, MessagingError
from acci.eventstore.messaging.publisher import EventPublisher
from acci.eventstore.records import RecordedEvent
from acci.eventstore.store import EventStore

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

    @activity.defn(name="RunCommand")
    async def run(self, command: CommandInput) -> CommandResult:
        """Validate, handle (load, decide, append) and publish: the whole command, idempotent.

        One local activity instead of three: each costs an activation and a marker, and every
        phase is safe to repeat, so a retry (RabbitMQ down, a worker killed) simply runs the
        command again: validation is pure, the append returns the stored result, and the
        events are published again with the same message ids.
        """
        run_id = activity.info().workflow_run_id
        try:
            parsed = parse(command)
            aggregate_for_command(parsed)
            outcome = await self._handle(command, parsed, run_id)
            result = _result(command, outcome)
            if outcome.event_ids:
                result = await self._publish_stored(command, outcome, result, run_id)
        except (CommandError, EventStoreError) as e:
            raise application_error(e) from e
        return result

    async def _publish_stored(
        self,
        command: CommandInput,
        outcome: CommandOutcome,
        result: CommandResult,
        run_id: str | None,
    ) -> CommandResult:
        """Publish every event the command stored, in every stream it touched.

        A first run publishes the events its append returned. A command stored before (a re-send,
        or an earlier attempt of this run whose publish failed) publishes them as stored, read
        back: the store is the truth, also after a crash between append and publish.
        """
        if outcome.events:
            await self._publish(command, list(outcome.events))
            return result
        events = await self._store.command_events(command.tenant_id, command.command_id)
        await self._publish(command, events)
        ours = bool(run_id and events) and events[0].metadata.get("workflow_run_id") == run_id
        if result.duplicate and ours:
            # Stored by an earlier attempt of this very run (its publish failed, say), not by an
            # earlier send of the command.
            return result.model_copy(update={"duplicate": False})
        return result

    async def _handle(
        self, command: CommandInput, parsed: Command, run_id: str | None
    ) -> CommandOutcome:
        # The run that stores the events is recorded with them: a later attempt of the same run
        # then knows they are its own, not an earlier send's.
        metadata = {**command.metadata, **({"workflow_run_id": run_id} if run_id else {})}
        outcome = await self._handler.handle(
            command.tenant_id, parsed, command_id=command.command_id, metadata=metadata
        )
        # The command's ids are on the line already (the worker binds them per activity).
        log.info(
            "command handled",
            extra={
                "aggregate_id": outcome.aggregate_id,
                "events": len(outcome.event_ids),
                "duplicate": outcome.duplicate,
            },
        )
        return outcome

    async def _publish(self, command: CommandInput, events: list[RecordedEvent]) -> None:
        # pika is blocking, so it runs in a thread, and a thread cannot be cancelled. A worker
        # told to stop does not wait for it: the attempt fails at once (retryably), the thread
        # ends within the publisher's timeouts, and the workflow publishes on a later attempt,
        # on whichever worker polls then (the SDK keeps retrying a local activity while its
        # worker shuts down, so an attempt that waited here would hold the worker past its grace).
        if activity.is_worker_shutdown():
            raise _shutting_down(len(events))
        publishing = asyncio.ensure_future(
            asyncio.to_thread(self._publisher.publish_events, events)
        )
        stopping = asyncio.ensure_future(activity.wait_for_worker_shutdown())
        try:
            await asyncio.wait({publishing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not publishing.done():
            publishing.add_done_callback(_retrieve)
            raise _shutting_down(len(events))
        publishing.result()
        log.info("published events", extra={"count": len(events)})


def _result(command: CommandInput, outcome: CommandOutcome) -> CommandResult:
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


def _shutting_down(count: int) -> MessagingError:
    return MessagingError(
        f"the worker is shutting down: publishing {count} event(s) is left to the next attempt"
    )


def _retrieve(task: asyncio.Future[None]) -> None:
    # The abandoned publish may still fail; its outcome no longer matters (the next attempt
    # publishes again), but an unretrieved exception would be logged as an error at exit.
    if not task.cancelled():
        task.exception()
