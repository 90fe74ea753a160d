"""``acci projections …``: status, pause and resume, and the parked events (dead letters).

Status, pause, resume and resolving a parked event go through each projection's workflow, which
owns the projection's progress (it serialises them with its batches, and runs the worker's
projection code and cache invalidation). Listing parked events reads the dead-letter table, the
truth about them, so it works with no worker running.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import timedelta
from typing import Annotated, Any

import typer

from acci.workers.cli_support import JsonOption, run, setup
from acci.workers.settings import get_settings

projections_app = typer.Typer(
    help="Projections: status, pause and resume, parked events.", no_args_is_help=True
)
dlq_app = typer.Typer(help="Events the projections parked (dead letters).", no_args_is_help=True)
projections_app.add_typer(dlq_app, name="dlq")

NameArgument = Annotated[str, typer.Argument(help="The projection (e.g. tenants).")]
EventIdArgument = Annotated[uuid.UUID, typer.Argument(help="The parked event's id.")]
ProjectionOption = Annotated[str, typer.Option("--projection", "-p", help="The projection.")]

# A running worker answers a query in milliseconds; a run no worker polls never does.
_RPC_TIMEOUT = timedelta(seconds=5)


@projections_app.command("status")
def status(as_json: JsonOption = False) -> None:
    """Each projection's state, position, head, lag (events and seconds), stall and last error.

    State, last error and attempts come from the projection's workflow ("stopped" if none
    answers). Position is the checkpoint row, head and lag are measured now: the newest
    committed event and the events committed after the checkpoint, so a paused or stopped
    projection shows its real lag, and one held back by an open event-writing transaction
    shows the stall (that transaction's age and pid) instead of lag 0.
    """
    setup()

    async def main() -> None:
        from acci.readmodels.checkpoints import CheckpointStore
        from acci.readmodels.installed import projection_names
        from acci.readmodels.read_model import is_rebuild_checkpoint
        from acci.workers.runtime import open_event_store
        from acci.workers.temporal_client import connect

        settings = get_settings()
        client = await connect(settings)
        async with open_event_store(settings) as rt:
            checkpoints = {c.projection: c for c in await CheckpointStore(rt.pool).all()}
            # A rebuild's checkpoint shows in `acci readmodels status` instead.
            rebuilds = {n for n in checkpoints if is_rebuild_checkpoint(n)}
            names = sorted({*projection_names(), *checkpoints} - rebuilds)
            # Asked all at once: a run no worker polls answers only when the query times out.
            answers = await asyncio.gather(*(_query_status(client, name) for name in names))
            statuses = []
            for name, answer in zip(names, answers, strict=True):
                checkpoint = checkpoints.get(name)
                found = answer or _stopped(name, checkpoint)
                statuses.append(await _measured(rt.pool, found, checkpoint))
        if as_json:
            typer.echo(json.dumps([s.model_dump(mode="json") for s in statuses], indent=2))
            return
        typer.echo(
            f"{'projection':<18} {'state':<8} {'position':<16} {'head':<16}"
            f" {'lag':>8} {'lag s':>8}  {'stalled by':<22} last error"
        )
        for s in statuses:
            typer.echo(
                f"{s.name:<18} {s.state:<8} {s.position:<16} {s.head:<16}"
                f" {s.lag_events:>8} {s.lag_seconds:>8.1f}  {_stall_text(s):<22}"
                f" {s.last_error or '-'}"
            )

    run(main())


async def _measured(pool: Any, found: Any, checkpoint: Any) -> Any:
    """``found`` with the checkpoint's position, and head, lag and stall measured now.

    Measured here rather than taken from the workflow, which answers from its last batch: a
    paused projection runs no batches (its answer would freeze), and asking costs one
    statement per projection, only when someone asks.
    """
    from acci.activities.projection_activities import standing
    from acci.eventstore.records import Position
    from acci.readmodels.lag import measure_lag

    position = checkpoint.position if checkpoint else Position.parse(found.position)
    return found.model_copy(update=standing(position, await measure_lag(pool, position)))


def _stall_text(s: Any) -> str:
    if not s.stalled:
        return "-"
    pid = f"pid {s.stall_pid}" if s.stall_pid is not None else "pid ?"
    return f"{s.stall_seconds:.1f}s ({pid})"


@projections_app.command("pause")
def pause(name: NameArgument) -> None:
    """Stop a projection where it is (it stays paused across restarts until resumed)."""
    setup()
    run(_update(name, "pause"))


@projections_app.command("resume")
def resume(name: NameArgument) -> None:
    """Let a paused projection go on (a failing event gets a fresh set of attempts)."""
    setup()
    run(_update(name, "resume"))


@dlq_app.command("list")
def dlq_list(
    projection: Annotated[
        str | None, typer.Option("--projection", "-p", help="Only this projection's.")
    ] = None,
    include_resolved: Annotated[
        bool, typer.Option("--all", help="Also the events already retried or skipped.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The parked events, oldest first (the open ones, unless --all)."""
    setup()

    async def main() -> None:
        from acci.readmodels.dead_letters import DeadLetterStore
        from acci.readmodels.installed import known_projection
        from acci.workers.runtime import open_event_store

        async with open_event_store(get_settings()) as rt:
            letters = await DeadLetterStore(rt.pool).list(
                projection=projection, include_resolved=include_resolved
            )
        if projection is not None and not letters:
            known_projection(projection)  # none parked, or no such projection: say which
        if as_json:
            rows = [
                {
                    "projection": d.projection,
                    "event_id": str(d.event_id),
                    "tenant_id": d.tenant_id,
                    "event_type": d.event_type,
                    "position": str(d.position),
                    "error": d.error,
                    "attempts": d.attempts,
                    "parked_at": d.parked_at.isoformat(),
                    "resolution": d.resolution,
                    "resolved_at": d.resolved_at.isoformat() if d.resolved_at else None,
                }
                for d in letters
            ]
            typer.echo(json.dumps(rows, indent=2))
            return
        if not letters:
            typer.echo("no parked events")
        for d in letters:
            state = d.resolution or "open"
            typer.echo(
                f"{d.projection:<18} {d.event_id}  {d.event_type:<22} {d.tenant_id}"
                f"  at {d.position}  {d.attempts} attempts  {state}  {d.error}"
            )

    run(main())


@dlq_app.command("retry")
def dlq_retry(event_id: EventIdArgument, projection: ProjectionOption) -> None:
    """Apply a parked event once more (exactly once) and mark it retried."""
    setup()
    run(_dead_letter(projection, event_id, "retry_dead_letter"))


@dlq_app.command("skip")
def dlq_skip(event_id: EventIdArgument, projection: ProjectionOption) -> None:
    """Mark a parked event skipped; a projection paused at it moves past it."""
    setup()
    run(_dead_letter(projection, event_id, "skip_dead_letter"))


async def _query_status(client: Any, name: str) -> Any:
    """The workflow's status answer, or None if no run answers."""
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from acci.activities.models import projection_workflow_id
    from acci.workflows.projection import ProjectionWorkflow

    handle = client.get_workflow_handle_for(ProjectionWorkflow.run, projection_workflow_id(name))
    try:
        return await handle.query(ProjectionWorkflow.status, rpc_timeout=_RPC_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError):
        return None


def _stopped(name: str, checkpoint: Any) -> Any:
    from acci.activities.models import ProjectionStatus

    return ProjectionStatus(
        name=name,
        state="stopped",
        position=str(checkpoint.position) if checkpoint else "0:0",
        head="?",
        lag_events=0,
        lag_seconds=0.0,
        last_error=checkpoint.last_error if checkpoint else None,
        updated_at=checkpoint.updated_at if checkpoint else None,
    )


async def _update(name: str, update: str) -> None:
    from acci.activities.models import ProjectionStatus

    status = await _execute_update(name, update, None, ProjectionStatus)
    typer.echo(f"{name}: {status.state} at {status.position} (head {status.head})")


async def _dead_letter(projection: str, event_id: uuid.UUID, update: str) -> None:
    from acci.activities.models import DeadLetterAction, DeadLetterResult

    result = await _execute_update(
        projection, update, DeadLetterAction(event_id=event_id), DeadLetterResult
    )
    changes = f", {result.changes} row change(s)" if result.resolution == "retried" else ""
    typer.echo(f"{projection}: event {event_id} {result.resolution}{changes}")


async def _execute_update(name: str, update: str, arg: Any, result_type: type[Any]) -> Any:
    """Run an update on the projection's workflow; failures become typed query errors."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError
    from temporalio.service import RPCError, RPCStatusCode

    from acci.activities.models import projection_workflow_id
    from acci.readmodels.errors import NotFoundError, ProjectionError
    from acci.readmodels.installed import known_projection
    from acci.workers.temporal_client import connect

    client = await connect(get_settings())
    workflow_id = projection_workflow_id(name)
    handle = client.get_workflow_handle(workflow_id)
    args = [] if arg is None else [arg]
    try:
        return await handle.execute_update(update, args=args, result_type=result_type)
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        if isinstance(cause, ApplicationError) and cause.type == "NotFoundError":
            raise NotFoundError(message) from None
        raise ProjectionError(message) from None
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            known_projection(name)  # a typo is not "not running"
            raise NotFoundError(
                f"projection {name!r} is not running (no workflow {workflow_id});"
                " start a worker (`acci worker`)"
            ) from None
        raise


def main() -> None:
    """``python -m workers.cli_projections``: the same commands as ``acci projections``."""
    try:
        projections_app()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    # As in workers.cli.main: leave before the Temporal SDK's threads can abort finalisation.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
