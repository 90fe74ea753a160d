"""``acci readmodels rebuild|status``: blue/green rebuilds of read models, and where each stands.

``rebuild`` starts (or joins: one workflow per read model and version) the
``RebuildReadModelWorkflow`` (workflows/rebuild.py) on the worker's task queue and follows its
``status`` query with a progress bar until queries are switched to the new version (the old one
is dropped after the grace period, by the workflow); ``--no-wait`` returns at once, ``--cancel``
cancels it (the new version's tables are dropped, the live one is untouched). ``status`` reads
each read model's versions from PostgreSQL and each rebuild's progress from Temporal.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Final

import typer

from acci.workers.cli_support import JsonOption, run, setup
from acci.workers.settings import get_settings

readmodels_app = typer.Typer(
    help="Read models: rebuild one into a new version (blue/green), see their versions.",
    no_args_is_help=True,
)

# The phases after which ``rebuild`` stops following the workflow (queries are switched, or it
# ended); the workflow itself goes on to drop the old version after the grace period.
_SETTLED: Final = frozenset({"retiring", "done", "failed", "cancelled"})
_POLL_SECONDS: Final = 0.5


@readmodels_app.command("rebuild")
def rebuild(
    name: Annotated[str, typer.Argument(help="The read model (see `acci readmodels status`).")],
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            min=1,
            max=9_999,
            help="The version to build; default: the one being built, else the live one + 1.",
        ),
    ] = None,
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace",
            min=0,
            help="Seconds to keep the old version after the switch (default: the setting).",
        ),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the workflow id and return at once.")
    ] = False,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Cancel the rebuild (drops the new version).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rebuild a read model into a new version beside the live one, validate it, switch
    queries to it; shows progress (phase, position, events/s, ETA)."""
    setup()

    async def main() -> None:
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

        from acci.activities.rebuild_models import (
            REBUILD_WORKFLOW,
            RebuildInput,
            rebuild_workflow_id,
        )
        from acci.workers.temporal_client import connect

        settings = get_settings()
        target = await _target(name, version)
        client = await connect(settings)
        workflow_id = rebuild_workflow_id(name, target)
        if cancel:
            await _cancel(client, workflow_id, as_json, name, target)
            return
        job = RebuildInput(
            read_model=name,
            version=target,
            grace_seconds=settings.readmodel_retire_grace_s if grace is None else grace,
        )
        handle = await client.start_workflow(
            REBUILD_WORKFLOW,
            job,
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        if no_wait:
            found = {"workflow_id": workflow_id, "run_id": handle.result_run_id, "version": target}
            typer.echo(
                json.dumps(found, indent=2)
                if as_json
                else f"rebuilding {name} into version {target}: workflow {workflow_id}"
            )
            return
        status = await _follow(handle, show_bar=not as_json)
        _show_outcome(workflow_id, status, as_json)

    run(main())


async def _target(name: str, version: int | None) -> int:
    """The version to rebuild into; an unknown read model is a typed error."""
    from acci.eventstore.db import create_pool
    from acci.readmodels.installed import read_model
    from acci.readmodels.versions import all_versions, rebuild_target

    read_model(name)
    if version is not None:
        return version
    url = get_settings().database_url.get_secret_value()
    async with create_pool(url, min_size=1, max_size=1) as pool:
        found = [v for v in await all_versions(pool) if v.read_model == name]
    return rebuild_target(found)


async def _cancel(client: Any, workflow_id: str, as_json: bool, name: str, version: int) -> None:
    from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
    from temporalio.service import RPCError

    handle = client.get_workflow_handle(workflow_id)
    try:
        running = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        if running:
            await handle.cancel()
    except RPCError:
        running = False
    if not running:
        # No rebuild runs: drop what a failed or interrupted one left, if anything.
        dropped = await _drop_leftover(name, version)
        outcome = {"workflow_id": workflow_id, "phase": None, "dropped": dropped}
        if as_json:
            typer.echo(json.dumps(outcome, indent=2))
        elif dropped:
            typer.echo(f"no rebuild runs; dropped version {version} of {name} it left behind")
        else:
            typer.echo(f"error (not_found): no rebuild of {name} into version {version}", err=True)
            raise typer.Exit(1) from None
        return
    try:
        await handle.result()
    except WorkflowFailureError:
        pass  # cancelled: the workflow dropped the new version's tables first
    status = await _query(handle) or {}
    outcome = {
        "workflow_id": workflow_id,
        "phase": status.get("phase"),
        "dropped": status.get("phase") == "cancelled" and not status.get("switched"),
    }
    if as_json:
        typer.echo(json.dumps(outcome, indent=2))
    elif outcome["dropped"]:
        typer.echo(f"cancelled {workflow_id}: the new version's tables are dropped")
    else:
        typer.echo(
            f"{workflow_id} had switched queries to the new version before the cancel"
            f" (phase {outcome['phase']}): it stays live; `acci readmodels status` shows the"
            " versions"
        )


async def _drop_leftover(name: str, version: int) -> bool:
    """Drop version ``version`` of ``name`` if it never went live (a failed rebuild's)."""
    from acci.eventstore.db import create_pool
    from acci.eventstore.store import EventStore
    from acci.readmodels.installed import read_model
    from acci.readmodels.rebuild import Rebuild
    from acci.workers.runtime import payload_encryption

    settings = get_settings()
    url = settings.database_url.get_secret_value()
    async with create_pool(url, min_size=1, max_size=2) as pool:
        store = EventStore(pool, encryption=payload_encryption(settings, pool))
        rebuild = Rebuild(store, read_model(name), version)
        if await rebuild.state() is None:
            return False
        return await rebuild.abandon()


async def _query(handle: Any) -> dict[str, Any] | None:
    try:
        found = await handle.query("status")
    except Exception:  # not started yet, or gone: nothing to show
        return None
    return found if isinstance(found, dict) else None


async def _follow(handle: Any, *, show_bar: bool) -> dict[str, Any]:
    """Poll the ``status`` query until the rebuild settles, drawing a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    # On stderr, as every progress line: stdout is the outcome's alone (a script reads it).
    console = Console(stderr=True)
    with Progress(*columns, disable=not show_bar, transient=True, console=console) as bar:
        task = bar.add_task("starting", total=None, rate="")
        while True:
            status = await _query(handle) or {}
            progress = status.get("progress") or {}
            head = _gp(progress.get("head"))
            bar.update(
                task,
                description=f"{status.get('read_model', '')} v{status.get('version', '')}:"
                f" {status.get('phase', 'starting')}",
                completed=_gp(progress.get("position")),
                total=head or None,
                rate=f"{progress.get('events_per_second', 0):,.0f} ev/s",
            )
            if status.get("phase") in _SETTLED:
                return status
            description = await handle.describe()
            if description.status is not None and description.status.name != "RUNNING":
                return await _query(handle) or {"phase": description.status.name.lower()}
            await asyncio.sleep(_POLL_SECONDS)


def _gp(position: str | None) -> int:
    return int(position.split(":")[1]) if position else 0


def _show_outcome(workflow_id: str, status: dict[str, Any], as_json: bool) -> None:
    phase = status.get("phase")
    if as_json:
        typer.echo(json.dumps({"workflow_id": workflow_id, **status}, indent=2, default=str))
    elif phase in ("retiring", "done"):
        progress = status.get("progress") or {}
        retired = status.get("retired")
        dropped = (
            f"; version {retired} is dropped after {status.get('drop_after')}" if retired else ""
        )
        typer.echo(
            f"{status['read_model']} is live at version {status['version']}"
            f" (projected up to {progress.get('position', 'the head')}, checked against the"
            f" fold and the live version){dropped}"
        )
    if phase not in ("retiring", "done"):
        if not as_json:
            _show_failure(workflow_id, status)
        raise typer.Exit(1)


def _show_failure(workflow_id: str, status: dict[str, Any]) -> None:
    typer.echo(
        f"error (rebuild): {workflow_id} {status.get('phase')}: {status.get('error')}", err=True
    )
    for check in status.get("validation") or []:
        for diff in check.get("differences") or []:
            typer.echo(
                f"  {check['table']} {diff['key']}: expected {diff['expected']},"
                f" found {diff['found']}",
                err=True,
            )


@readmodels_app.command("status")
def status(as_json: JsonOption = False) -> None:
    """Every read model: its live version and position, its other versions, and any rebuild
    in progress (phase, position, events/s, ETA)."""
    setup()

    async def main() -> None:
        from acci.workers.readmodel_status import read_model_statuses

        found = await read_model_statuses(get_settings())
        if as_json:
            typer.echo(json.dumps(found, indent=2, default=str))
            return
        for model in found:
            typer.echo(
                f"{model['read_model']}: live version {model['live_version']} at"
                f" {model['position']} ({model['lag_events']} event(s) behind)"
            )
            for other in model["versions"]:
                if other["state"] == "live":
                    continue
                line = f"  version {other['version']}: {other['state']}"
                if other.get("drop_after"):
                    line += f", dropped after {other['drop_after']}"
                if other.get("rebuild"):
                    line += _rebuild_line(other["rebuild"])
                if other.get("detail"):
                    line += f" ({other['detail']})"
                typer.echo(line)

    run(main())


def _rebuild_line(rebuild: dict[str, Any]) -> str:
    """A version's rebuild in ``acci readmodels status``: its phase, where it is and its ETA
    while it runs, and why it failed (a refused start never got a position)."""
    line = f", rebuild {rebuild['phase']}"
    if rebuild.get("position") is not None:
        line += f" at {rebuild['position']} of {rebuild.get('head')}"
    if rebuild.get("eta_seconds") is not None:
        line += f", ETA {rebuild['eta_seconds']:,.0f} s"
    if rebuild["phase"] == "failed" and rebuild.get("error"):
        line += f": {rebuild['error']}"
    return line
