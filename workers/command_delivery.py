"""Waiting for a sent command, boundedly: finished, or stored with its publishing still pending.

A command's workflow appends, then publishes to RabbitMQ, retrying the publish until the broker
answers. A client that only awaited the result would hang without a word through a RabbitMQ
outage although the command is safely stored (and projected). So the wait is bounded: past it,
the store says whether the command's events are there; if they are, the client learns that the
command is stored (with its position) and that publishing is pending, while the workflow goes on
publishing by itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client

from acci.activities.command_activities import parse
from acci.activities.models import CommandInput, CommandResult
from acci.domain import aggregate_for_command
from acci.domain.errors import CommandError
from acci.eventstore.records import RecordedEvent
from acci.eventstore.store import EventStore
from acci.workers.temporal_client import SentCommand, command_result, start_command

StoredEvents = Callable[[], Awaitable[list[RecordedEvent]]]


@dataclass(frozen=True, slots=True)
class CommandDelivery:
    """How far a command got: its result once published, else its stored events' positions."""

    command_id: uuid.UUID
    tenant_id: str
    workflow_id: str
    # The workflow's result; None while publishing is pending.
    result: CommandResult | None
    event_ids: tuple[uuid.UUID, ...]
    positions: tuple[str, ...]
    resent: bool = False

    @property
    def published(self) -> bool:
        """True once the workflow finished: the events are stored and published."""
        return self.result is not None

    @property
    def position(self) -> str | None:
        """The position of the command's last event, if it stored any."""
        return self.positions[-1] if self.positions else None


async def stored_events(store: EventStore, command: CommandInput) -> list[RecordedEvent]:
    """The events this very command stored (none if it stored none, or if the id was used by
    another command: nothing about that one is disclosed)."""
    try:
        parsed = parse(command)
    except CommandError:
        return []  # the workflow refuses it; nothing of it can be stored
    record = await store.command_record(command.command_id, command.tenant_id)
    aggregate_type = aggregate_for_command(parsed).aggregate_type
    fingerprint = parsed.fingerprint(command.tenant_id)
    if record is None or not record.may_be(
        command.tenant_id, aggregate_type, parsed.aggregate_id, parsed.command_type, fingerprint
    ):
        return []
    return await store.command_events(command.tenant_id, command.command_id)


async def await_delivery(
    sent: SentCommand,
    command: CommandInput,
    *,
    wait: float,
    stored: StoredEvents,
    still_waiting: Callable[[], None] | None = None,
) -> CommandDelivery:
    """The command's result if it finishes within ``wait`` seconds; else, if ``stored()``
    finds its events, a delivery with ``published`` False; else wait on (calling
    ``still_waiting`` once) and look again every ``wait`` seconds.

    A command that fails raises its typed ``CommandError``, as ``command_result`` does.
    """
    finishing = asyncio.ensure_future(command_result(sent.handle))
    warned = False
    try:
        while True:
            done, _ = await asyncio.wait({finishing}, timeout=wait)
            if done:
                result = finishing.result()
                return CommandDelivery(
                    command_id=result.command_id,
                    tenant_id=result.tenant_id,
                    workflow_id=sent.handle.id,
                    result=result,
                    event_ids=tuple(result.event_ids),
                    positions=tuple(result.positions),
                    resent=sent.resent,
                )
            events = await stored()
            if events:
                return CommandDelivery(
                    command_id=command.command_id,
                    tenant_id=command.tenant_id,
                    workflow_id=sent.handle.id,
                    result=None,
                    event_ids=tuple(e.event_id for e in events),
                    positions=tuple(str(e.position) for e in events),
                    resent=sent.resent,
                )
            if still_waiting is not None and not warned:
                still_waiting()
                warned = True
    finally:
        finishing.cancel()


async def deliver_command(
    client: Client,
    command: CommandInput,
    *,
    task_queue: str,
    store: EventStore,
    publish_wait: float = 5.0,
) -> CommandDelivery:
    """Send a command; its result, or (past ``publish_wait`` seconds, the events stored but not
    yet published) a delivery with ``published`` False. The workflow publishes by itself later.

    ``execute_command`` is the same without a bound: it returns only once the events are
    published.
    """
    sent = await start_command(client, command, task_queue=task_queue)
    return await await_delivery(
        sent, command, wait=publish_wait, stored=lambda: stored_events(store, command)
    )
