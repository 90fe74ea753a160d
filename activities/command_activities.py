"""The command workflow's activities: authorize, validate, handle (load, decide, append), audit,
publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from acci.activities.command_handler import CommandHandler, CommandOutcome
from acci.activities.errors import application_error
from acci.activities.models import CommandInput, CommandResult
from acci.domain import COMMAND_TYPES, aggregate_for_command, parse_command
from acci.domain.authorization import authorize, check_sender
from acci.domain.command import Command
from acci.domain.errors import AuthorizationError, CommandError
from acci.domain.identifiers import validate_tenant_id
from acci.domain.metadata import ACTOR
from acci.domain.principals import Principal
from acci.eventstore.audit import AuditLog, CommandAttempt, Outcome
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
        self,
        *,
        handler: CommandHandler,
        store: EventStore,
        publisher: EventPublisher,
        audit: AuditLog,
    ) -> None:
        self._handler = handler
        self._store = store
        self._publisher = publisher
        self._audit = audit

    @activity.defn(name="RunCommand")
    async def run(self, command: CommandInput) -> CommandResult:
        """Authorize, validate, handle (load, decide, append), audit and publish: the whole
        command, idempotent.

        One local activity instead of three: each costs an activation and a marker, and every
        phase is safe to repeat, so a retry (RabbitMQ down, a worker killed) simply runs the
        command again: authorization and validation are pure, the append returns the stored
        result, the audit row of an outcome is written once, and the events are published
        again with the same message ids.

        The principal is checked first (``domain/authorization.py``): a command it may not
        send is refused before anything is loaded, written or published, and audited as
        ``denied``. Every outcome is audited before the activity returns or raises, except a
        malformed tenant id (no tenant to record it in; Temporal's history and the log keep it).
        """
        info = activity.info()
        attempt = _Attempt(command, info.workflow_id, info.workflow_run_id)
        try:
            validate_tenant_id(command.tenant_id)
        except CommandError as e:
            raise application_error(e) from e
        try:
            check_sender(command.principal, command.tenant_id, command.command_type)
            parsed = parse(command)
            attempt.target = (aggregate_for_command(parsed).aggregate_type, parsed.aggregate_id)
            principal = authorize(command.principal, command.tenant_id, parsed)
            outcome = await self._handle(command, parsed, principal, attempt.run_id)
            result, events = await self._stored(command, outcome, attempt.run_id)
        except (CommandError, EventStoreError) as e:
            error = application_error(e)
            await self._record_failure(attempt, error)
            raise error from e
        except Exception as e:
            await self._record_failure(attempt, ApplicationError(str(e), type=type(e).__name__))
            raise
        attempt.target = (result.aggregate_type, result.aggregate_id)
        row = attempt.recorded("duplicate" if result.duplicate else "accepted")
        try:
            await self._record_and_publish(command, row, events)
        except (CommandError, EventStoreError) as e:
            raise application_error(e) from e
        return result

    async def _record_and_publish(
        self, command: CommandInput, row: CommandAttempt, events: list[RecordedEvent]
    ) -> None:
        """Audit the stored command and publish its events side by side (both wait on a round
        trip: the audit insert on PostgreSQL, the publish on RabbitMQ's confirms); the attempt
        succeeds once both have. If either fails, the attempt is retried: the append and the
        audit row are found stored, and the events published again."""
        recording = asyncio.ensure_future(self._audit.record(row))
        try:
            if events:
                await self._publish(command, events)
        except BaseException:
            recording.add_done_callback(_retrieve)
            raise
        await recording

    async def _record_failure(self, attempt: _Attempt, error: ApplicationError) -> None:
        """Audit a refused or failed attempt. A refusal (denied, rejected) that cannot be
        recorded fails the attempt retryably instead, so that it is recorded once the database
        answers; a failure that is retried anyway is recorded if the database lets it."""
        if error.type == AuthorizationError.__name__:
            outcome: Outcome = "denied"
        elif error.non_retryable:
            outcome = "rejected"
        else:
            outcome = "failed"
        row = attempt.recorded(outcome, error_type=error.type, reason=error.message)
        try:
            await self._audit.record(row)
        except EventStoreError as e:
            if outcome != "failed":
                raise application_error(e) from e
            log.warning("could not audit a failed command attempt", extra={"error": str(e)})

    async def _stored(
        self, command: CommandInput, outcome: CommandOutcome, run_id: str | None
    ) -> tuple[CommandResult, list[RecordedEvent]]:
        """The command's result and every event it stored (in every stream it touched), to
        publish.

        A first run has the events its append returned. A command stored before (a re-send, or
        an earlier attempt of this run whose publish failed) has them as stored, read back: the
        store is the truth, also after a crash between append and publish.
        """
        if outcome.events or not outcome.event_ids:
            return _result(command, outcome, outcome.events), list(outcome.events)
        events = await self._store.command_events(command.tenant_id, command.command_id)
        ours = bool(run_id and events) and events[0].metadata.get("workflow_run_id") == run_id
        # Stored by an earlier attempt of this very run (its publish failed, say), not by an
        # earlier send of the command: not a duplicate.
        return _result(command, outcome, events, duplicate=outcome.duplicate and not ours), events

    async def _handle(
        self, command: CommandInput, parsed: Command, principal: Principal, run_id: str | None
    ) -> CommandOutcome:
        # The run that stores the events is recorded with them: a later attempt of the same run
        # then knows they are its own, not an earlier send's. So is the principal that sent the
        # command (``actor``, reserved: a client cannot claim it in its metadata).
        metadata: dict[str, Any] = {**command.metadata, ACTOR: principal.actor()}
        if run_id:
            metadata["workflow_run_id"] = run_id
        outcome = await self._handler.handle(
            command.tenant_id,
            parsed,
            command_id=command.command_id,
            metadata=metadata,
            principal=principal,
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


@dataclass(slots=True)
class _Attempt:
    """What the audit records of a command attempt besides its outcome; the target once the
    command has parsed."""

    command: CommandInput
    workflow_id: str | None
    run_id: str | None
    target: tuple[str, str] | None = None

    def recorded(
        self, outcome: Outcome, *, error_type: str | None = None, reason: str | None = None
    ) -> CommandAttempt:
        aggregate_type, aggregate_id = self.target or (None, None)
        return CommandAttempt(
            tenant_id=self.command.tenant_id,
            command_id=self.command.command_id,
            command_type=self.command.command_type,
            outcome=outcome,
            principal=self.command.principal,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            error_type=error_type,
            reason=reason,
            workflow_id=self.workflow_id,
            workflow_run_id=self.run_id,
        )


def _result(
    command: CommandInput,
    outcome: CommandOutcome,
    events: Sequence[RecordedEvent],
    *,
    duplicate: bool | None = None,
) -> CommandResult:
    """The command's result: the addressed stream's version, and every event the command
    stored in any stream (``RegisterUser`` also takes a seat on its tenant's), in global order,
    so that its ``position``, the last, covers them all for read-your-writes."""
    ids, positions = (
        ([e.event_id for e in events], [e.position for e in events])
        if events
        else (list(outcome.event_ids), list(outcome.positions))
    )
    return CommandResult(
        command_id=command.command_id,
        tenant_id=outcome.tenant_id,
        aggregate_id=outcome.aggregate_id,
        aggregate_type=outcome.aggregate_type,
        stream_version=outcome.stream_version,
        event_ids=ids,
        global_positions=[p.global_position for p in positions],
        positions=[str(p) for p in positions],
        duplicate=outcome.duplicate if duplicate is None else duplicate,
    )


def _shutting_down(count: int) -> MessagingError:
    return MessagingError(
        f"the worker is shutting down: publishing {count} event(s) is left to the next attempt"
    )


def _retrieve(task: asyncio.Future[Any]) -> None:
    # The abandoned publish (or audit write) may still fail; its outcome no longer matters (the
    # next attempt does it again), but an unretrieved exception would be logged at exit.
    if not task.cancelled():
        task.exception()
