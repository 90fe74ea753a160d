"""``acci publish-events``: publish stored events to RabbitMQ again, from the store.

For events that never reached RabbitMQ: a command workflow terminated between its append and
its publish leaves its events in the store (and the read models have them) but RabbitMQ never
got them. Messages carry the same ids as the first time (message_id = event id), and consumers
deduplicate on it, so publishing an event twice is harmless.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from acci.workers.cli_support import JsonOption, checked_tenant, parse_position, run, setup
from acci.workers.settings import get_settings

if TYPE_CHECKING:
    from acci.eventstore.messaging.publisher import EventPublisher
    from acci.eventstore.records import Position
    from acci.eventstore.store import EventStore

Progress = Callable[[int, "Position"], None]


async def publish_command(
    store: EventStore, publisher: EventPublisher, tenant_id: str, command_id: uuid.UUID
) -> list[Position]:
    """Publish the events one command stored; their positions (none: it stored none)."""
    events = await store.command_events(tenant_id, command_id)
    await asyncio.to_thread(publisher.publish_events, events)
    return [e.position for e in events]


async def publish_range(
    store: EventStore,
    publisher: EventPublisher,
    *,
    after: Position,
    until: Position | None = None,
    since: datetime | None = None,
    tenant_id: str | None = None,
    batch_size: int = 500,
    progress: Progress | None = None,
) -> tuple[int, Position]:
    """Publish the events after ``after`` in global order, up to ``until`` (inclusive) and from
    ``since`` (their ``created_at``), of one tenant or all, but a shredded tenant's; returns how
    many and the last position read. Reads what the gap-free order shows now: events still
    being committed are not reached."""
    count, position = 0, after
    while True:
        events = await store.read_all(position, limit=batch_size, tenant_id=tenant_id)
        if until is not None:
            events = [e for e in events if e.position <= until]
        if not events:
            return count, position
        position = events[-1].position
        # A shredded tenant's events are passed over: their data is gone, and a consumer must
        # never be handed the ciphertext as if it were the event.
        chosen = [e for e in events if e.readable and (since is None or e.created_at >= since)]
        await asyncio.to_thread(publisher.publish_events, chosen)
        count += len(chosen)
        if progress is not None:
            progress(count, position)


def publish_events(
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            "-t",
            help="Tenant id (required with --command-id).",
            callback=checked_tenant,
        ),
    ] = None,
    command_id: Annotated[
        uuid.UUID | None,
        typer.Option("--command-id", help="Publish the events of this command."),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option("--after", help="Publish the events after this position (TX:GP)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="... up to this position (TX:GP), inclusive."),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since", help="... stored at or after this time (ISO 8601, UTC if no zone)."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Events per read.")
    ] = 500,
    as_json: JsonOption = False,
) -> None:
    """Publish stored events to RabbitMQ again (same message ids): one command's, or a range."""
    setup()
    start, end = parse_position(after, "--after"), parse_position(until, "--until")
    by_range = start is not None or end is not None or since is not None
    if command_id is not None and by_range:
        raise typer.BadParameter("--command-id excludes --after, --until and --since")
    if command_id is None and not by_range:
        raise typer.BadParameter("give --command-id (with --tenant), or --after and/or --since")
    if command_id is not None and tenant is None:
        raise typer.BadParameter("--command-id needs --tenant")
    if start is not None and end is not None and end <= start:
        raise typer.BadParameter(f"--until {end} is not after --after {start}: nothing in between")
    when = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since

    from acci.eventstore.messaging.publisher import EventPublisher
    from acci.eventstore.records import START
    from acci.workers.runtime import open_event_store

    settings = get_settings()

    def show_progress(count: int, position: Position) -> None:
        if not as_json:
            typer.echo(f"published {count} event(s), read up to position {position}", err=True)

    async def main() -> None:
        with EventPublisher(settings.rabbitmq_url.get_secret_value()) as publisher:
            async with open_event_store(settings, migrate_schema=False) as rt:
                if command_id is not None:
                    assert tenant is not None
                    positions = await publish_command(rt.store, publisher, tenant, command_id)
                    count, last = len(positions), (positions[-1] if positions else None)
                else:
                    count, last = await publish_range(
                        rt.store,
                        publisher,
                        after=start or START,
                        until=end,
                        since=when,
                        tenant_id=tenant,
                        batch_size=batch_size,
                        progress=show_progress,
                    )
        if command_id is not None and not count:
            # A mistyped id, another tenant's, or a command that stored nothing (not recorded).
            typer.echo(
                f"error (not_found): command {command_id} has no events in tenant {tenant}:"
                " nothing published",
                err=True,
            )
            raise typer.Exit(1)
        if as_json:
            shown = {"published": count, "position": None if last is None else str(last)}
            typer.echo(json.dumps(shown))
        else:
            typer.echo(f"published {count} event(s) to RabbitMQ (read up to position {last})")

    run(main())
