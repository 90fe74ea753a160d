"""``acci events`` and ``acci aggregate``: one aggregate's history, read from the event store.

``events`` prints a stream's stored events (the audit trail); ``aggregate`` folds them into the
aggregate's state now, at a stream version, or as of a time.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from acci.domain.errors import CommandError
from acci.workers.cli_support import JsonOption, TenantOption, run, setup
from acci.workers.settings import get_settings

if TYPE_CHECKING:
    from acci.domain.aggregate import EventSourced
    from acci.workers.runtime import EventStoreRuntime

TypeOption = Annotated[
    str | None,
    typer.Option(
        "--type",
        help="The aggregate type (Tenant, User, ...): streams of different types may share an id.",
    ),
]


def events(
    aggregate_id: Annotated[str, typer.Argument(help="The stream (aggregate id).")],
    tenant: TenantOption,
    aggregate_type: TypeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a stream's events: the audit trail of one aggregate (of every type with that id
    unless --type names one)."""
    setup()
    from acci.workers.runtime import open_event_store

    async def main() -> None:
        async with open_event_store(get_settings()) as rt:
            recorded = await rt.store.read_stream(
                tenant, aggregate_id, aggregate_type=aggregate_type
            )
            problems = [_problem(rt.store.registry, e) for e in recorded]
        if as_json:
            shown = [
                {**_event_json(e), "problem": p} for e, p in zip(recorded, problems, strict=True)
            ]
            typer.echo(json.dumps(shown, indent=2, default=str))
            return
        if not recorded:
            typer.echo(f"no events in stream {tenant}/{aggregate_id}")
        for e, problem in zip(recorded, problems, strict=True):
            typer.echo(
                f"{e.aggregate_type} v{e.sequence_number:<4}"
                f" {e.created_at.isoformat(timespec='milliseconds')}"
                f"  {e.event_type} v{e.event_version}  {json.dumps(e.data)}"
                f"  (position {e.position}, command {e.command_id})"
                + (f"\n  ! {problem}" if problem else "")
            )

    run(main())


def aggregate(
    aggregate_id: Annotated[str, typer.Argument(help="The aggregate id.")],
    tenant: TenantOption,
    aggregate_type: TypeOption = None,
    version: Annotated[
        int | None, typer.Option(help="State at this stream version (1 or more).")
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", help="State as of this time (ISO 8601, UTC if no zone)."),
    ] = None,
) -> None:
    """Print an aggregate's state now, at a version, or as of a time."""
    if version is not None and version < 1:
        # A stream's first event is version 1; version 0 would be the state before it.
        raise typer.BadParameter(f"must be 1 or more, got {version}", param_hint="'--version'")
    if version is not None and as_of is not None:
        raise typer.BadParameter("--version and --as-of exclude each other")
    setup()
    from datetime import UTC

    from acci.workers.runtime import open_event_store

    when = as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of

    async def main() -> None:
        async with open_event_store(get_settings()) as rt:
            agg = await _load_aggregate(
                rt, tenant, aggregate_id, aggregate_type=aggregate_type, version=version, when=when
            )
        typer.echo(
            json.dumps(
                {
                    "tenant_id": tenant,
                    "aggregate_id": aggregate_id,
                    "aggregate_type": agg.aggregate_type,
                    "version": agg.version,
                    "state": agg.state_to_json(),
                },
                indent=2,
            )
        )

    run(main())


async def _load_aggregate(
    rt: EventStoreRuntime,
    tenant: str,
    aggregate_id: str,
    *,
    aggregate_type: str | None,
    version: int | None,
    when: datetime | None,
) -> EventSourced[Any, Any]:
    """The aggregate with this id (of this type, if named), at ``version`` or as of ``when``.

    ``NotFoundError`` if it did not exist then; ``CommandValidationError`` if the id names
    aggregates of several types and none is named.
    """
    from acci.domain import AGGREGATES
    from acci.domain.errors import CommandValidationError
    from acci.readmodels.errors import NotFoundError

    # The first event of every stream with this id (of this type, if one is named).
    firsts = await rt.store.read_stream(
        tenant, aggregate_id, aggregate_type=aggregate_type, to_version=1
    )
    if not firsts:
        named = f"{aggregate_type} " if aggregate_type else ""
        raise NotFoundError(f"there is no {named}aggregate {aggregate_id!r} in tenant {tenant!r}")
    if len(firsts) > 1:
        types = ", ".join(e.aggregate_type for e in firsts)
        raise CommandValidationError(
            f"{aggregate_id!r} names aggregates of several types in tenant {tenant!r}"
            f" ({types}); choose one with --type"
        )
    cls = AGGREGATES[firsts[0].aggregate_type]
    what = f"{cls.aggregate_type} {aggregate_id!r} of tenant {tenant!r}"
    # Folding no events would print an empty state as if it had been the state then.
    if when is not None and when < firsts[0].created_at:
        raise NotFoundError(
            f"{what} did not exist as of {when.isoformat()}:"
            f" its first event was stored at {firsts[0].created_at.isoformat()}"
        )
    agg = await rt.repository.load(cls, tenant, aggregate_id, version=version, as_of=when)
    if version is not None and agg.version < version:
        raise NotFoundError(
            f"{what} has no version {version}: its stream is at version {agg.version}"
        )
    return agg


def _problem(registry: Any, event: Any) -> str | None:
    """Why the stored (and upcast) event does not read as its type's current model, or None:
    the trail shows every event as stored, and says which ones a load would refuse."""
    if not event.readable:
        return event.damage() or "unreadable: its tenant was shredded"
    try:
        registry.decode(event.event_type, event.event_version, event.data)
    except CommandError as e:
        return str(e)
    return None


def _event_json(e: Any) -> dict[str, Any]:
    return {
        "event_id": str(e.event_id),
        "sequence_number": e.sequence_number,
        "event_type": e.event_type,
        "event_version": e.event_version,
        "data": e.data,
        "metadata": e.metadata,
        "command_id": str(e.command_id),
        "created_at": e.created_at.isoformat(),
        "position": str(e.position),
    }
