"""``acci backup create|list|verify|restore``: backups of the event store, and restores.

``create`` and ``restore`` start ``BackupWorkflow`` / ``RestoreWorkflow`` (workflows/backup.py)
on the worker's task queue (the worker writes and reads the backup folder, ``ACCI_BACKUP_DIR``)
and wait for them (``--no-wait``: return at once); ``list`` and ``verify`` read the folder from
this process. ``verify`` checks a chain as a restore would, in a transaction it rolls back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import typer

from acci.workers.cli_support import JsonOption, checked_tenant, parse_position, run, setup
from acci.workers.settings import get_settings

backup_app = typer.Typer(
    help="Backups of the event store: create, list, verify, restore (one tenant or all, to a"
    " point in time).",
    no_args_is_help=True,
)


TenantScope = Annotated[
    str | None,
    typer.Option(
        "--tenant", "-t", help="One tenant; default: every tenant.", callback=checked_tenant
    ),
]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Print the workflow id and return.")]


@backup_app.command("create")
def create(
    tenant: TenantScope = None,
    full: Annotated[
        bool, typer.Option("--full", help="A full backup (default: incremental after the last).")
    ] = False,
    no_wait: NoWait = False,
    as_json: JsonOption = False,
) -> None:
    """Back up the events, commands and snapshots of every tenant or one (a full backup when
    the scope has none yet); then the retention."""
    setup()

    async def main() -> None:
        from temporalio.client import WorkflowFailureError
        from temporalio.exceptions import ActivityError

        from acci.activities.backup_models import BACKUP_WORKFLOW, BackupInput, BackupResult

        job = BackupInput(tenant=tenant, full=full)
        workflow_id = f"backup-{tenant or 'all'}-{uuid.uuid4().hex[:8]}"
        handle = await _start(BACKUP_WORKFLOW, job, workflow_id, "backing up", no_wait, as_json)
        if handle is None:
            return
        try:
            result = BackupResult.model_validate(await handle.result())
        except WorkflowFailureError as e:
            cause = e.cause.cause if isinstance(e.cause, ActivityError) else e.cause
            typer.echo(f"error (backup): {getattr(cause, 'message', None) or cause}", err=True)
            raise typer.Exit(1) from None
        _echo(
            {"workflow_id": workflow_id, **result.model_dump(mode="json")},
            as_json,
            f"backup {result.backup_id} ({result.kind}, {_scope(result.tenant)}):"
            f" {result.events:,} events, {result.bytes:,} bytes, checkpoint"
            f" {result.checkpoint}, {result.seconds} s",
        )

    run(main())


@backup_app.command("list")
def list_backups(tenant: TenantScope = None, as_json: JsonOption = False) -> None:
    """The complete backups, oldest first (of every scope; ``--tenant``: that tenant's)."""
    setup()
    from acci.eventstore.backup.catalog import list_backups as listed

    settings = get_settings()
    stored = listed(settings.backup_dir, tenant=tenant, every_scope=tenant is None)
    if as_json:
        typer.echo(json.dumps([s.manifest.model_dump(mode="json") for s in stored], indent=2))
        return
    if not stored:
        typer.echo(f"no backups in {settings.backup_dir}")
    for s in stored:
        m = s.manifest
        typer.echo(
            f"{m.backup_id}  {m.kind:<11} {_scope(m.tenant):<20} {m.events:>10,} events"
            f" {m.bytes:>12,} bytes  up to {m.checkpoint}"
            + (f"  after {m.parent}" if m.parent else "")
        )


@backup_app.command("verify")
def verify(
    backup_id: Annotated[str, typer.Argument(help="The backup (its chain is checked too).")],
    as_json: JsonOption = False,
) -> None:
    """Check a backup and the chain before it as a restore would (files, checksums, counts,
    stream contiguity, links), changing nothing."""
    setup()

    async def main() -> None:
        from acci.eventstore.backup.restore import (
            PointInTime,
            load_chain,
            stage,
            verify_files,
        )
        from acci.eventstore.db import create_pool

        settings = get_settings()
        chain = load_chain(settings.backup_dir, backup_id)
        await asyncio.to_thread(verify_files, chain)
        url = settings.database_url.get_secret_value()
        async with create_pool(url, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn, conn.transaction(force_rollback=True):
                staged = await stage(conn, chain, PointInTime())
        found = {
            "backup_id": backup_id,
            "chain": [m.backup_id for _, m in chain],
            "events": staged.events,
            "commands": staged.commands,
            "snapshots": staged.snapshots,
            "tenants": len(staged.tenants),
            "last_position": str(staged.last_position) if staged.last_position else None,
        }
        _echo(
            found,
            as_json,
            f"ok: {backup_id} and its chain ({len(chain)} backup(s)): {staged.events:,} events,"
            f" {staged.commands:,} commands, {staged.snapshots:,} snapshots of"
            f" {len(staged.tenants)} tenant(s), up to {found['last_position']}",
        )

    run(main())


@backup_app.command("restore")
def restore(
    backup_id: Annotated[str, typer.Argument(help="The backup to restore (with its chain).")],
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            "-t",
            help="Restore this tenant only, while the system runs.",
            callback=checked_tenant,
        ),
    ] = None,
    until_time: Annotated[
        datetime | None,
        typer.Option("--until-time", help="Stop at this time (ISO 8601): events created then."),
    ] = None,
    until_position: Annotated[
        str | None,
        typer.Option("--until-position", help="Stop at this position, TX:GP."),
    ] = None,
    republish: Annotated[
        bool, typer.Option("--republish", help="Publish the tenant's events to RabbitMQ again.")
    ] = False,
    no_wait: NoWait = False,
    as_json: JsonOption = False,
) -> None:
    """Restore one tenant (replacing its events, snapshots and read-model rows, others
    untouched) or everything into an empty store, to the chain's end or a point in time."""
    parse_position(until_position, "--until-position")
    if until_time is not None and until_position is not None:
        raise typer.BadParameter("--until-time and --until-position exclude each other")
    setup()

    async def main() -> None:
        from acci.activities.backup_models import RESTORE_WORKFLOW, RestoreInput

        job = RestoreInput(
            backup_id=backup_id,
            tenant=tenant,
            until_position=until_position,
            until_time=until_time,
            republish=republish,
        )
        workflow_id = f"restore-{backup_id}-{tenant or 'all'}-{uuid.uuid4().hex[:6]}"
        handle = await _start(RESTORE_WORKFLOW, job, workflow_id, "restoring", no_wait, as_json)
        if handle is None:
            return
        status = await _follow(handle, show=not as_json)
        _show_restore(workflow_id, status, as_json)

    run(main())


async def _follow(handle: Any, *, show: bool) -> dict[str, Any]:
    """Poll the restore's ``status`` query until it ends, showing its phase on stderr."""
    from rich.console import Console

    console = Console(stderr=True, quiet=not show)
    last: dict[str, Any] = {}
    with console.status("restore: starting", spinner="dots") as shown:
        while True:
            try:
                status = await handle.query("status")
            except Exception:  # not started yet
                status = None
            if isinstance(status, dict):
                last = status
                shown.update(f"restore {status.get('backup_id')}: {status.get('phase')}")
            description = await handle.describe()
            if description.status is not None and description.status.name != "RUNNING":
                if last.get("phase") not in ("done", "failed"):
                    last = {**last, "phase": description.status.name.lower()}
                return last
            await asyncio.sleep(0.3)


def _show_restore(workflow_id: str, status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"workflow_id": workflow_id, **status}, indent=2, default=str))
    if status.get("phase") != "done":
        if not as_json:
            typer.echo(f"error (restore): {workflow_id}: {status.get('error')}", err=True)
        raise typer.Exit(1)
    if not as_json:
        models = ", ".join(f"{k} {v:,}" for k, v in (status.get("read_model_events") or {}).items())
        typer.echo(
            f"restored {_scope(status.get('tenant'))} from {status['backup_id']}"
            f" (chain {', '.join(status.get('chain') or [])}): {status['events']:,} events,"
            f" {status['commands']:,} commands, {status['snapshots']:,} snapshots, up to"
            f" {status.get('last_position')}"
            + (f"; read models made again ({models})" if models else "")
            + (
                f"; {status['republished']:,} events republished"
                if status.get("republished")
                else ""
            )
        )


async def _start(
    workflow: str, job: Any, workflow_id: str, doing: str, no_wait: bool, as_json: bool
) -> Any:
    """Start ``workflow`` on the worker's task queue; its handle, or None once ``--no-wait``
    printed its id."""
    from acci.workers.temporal_client import connect

    settings = get_settings()
    client = await connect(settings)
    handle = await client.start_workflow(
        workflow, job, id=workflow_id, task_queue=settings.task_queue
    )
    if no_wait:
        _echo({"workflow_id": workflow_id}, as_json, f"{doing}: workflow {workflow_id}")
        return None
    return handle


def _scope(tenant: str | None) -> str:
    return "every tenant" if tenant is None else f"tenant {tenant}"


def _echo(found: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(found, indent=2, default=str) if as_json else text)


def verify_store(
    tenant: TenantScope = None,
    sample: Annotated[
        int | None,
        typer.Option("--sample", min=0, help="Snapshots to check (default: the setting)."),
    ] = None,
    no_wait: NoWait = False,
    as_json: JsonOption = False,
) -> None:
    """Check the live store: streams contiguous, every event decodes and upcasts, sampled
    snapshots equal a fold, every read model equals a fold of the events (changes nothing)."""
    setup()

    async def main() -> None:
        from temporalio.client import WorkflowFailureError
        from temporalio.exceptions import ActivityError

        from acci.activities.backup_models import VERIFY_WORKFLOW, VerifyInput, VerifyResult

        settings = get_settings()
        job = VerifyInput(
            tenant=tenant, sample=settings.verify_snapshot_sample if sample is None else sample
        )
        workflow_id = f"verify-{tenant or 'all'}-{uuid.uuid4().hex[:8]}"
        handle = await _start(VERIFY_WORKFLOW, job, workflow_id, "verifying", no_wait, as_json)
        if handle is None:
            return
        try:
            result = VerifyResult.model_validate(await handle.result())
        except WorkflowFailureError as e:
            cause = e.cause.cause if isinstance(e.cause, ActivityError) else e.cause
            kind = "not_found" if getattr(cause, "type", None) == "NotFoundError" else "verify"
            typer.echo(f"error ({kind}): {getattr(cause, 'message', None) or cause}", err=True)
            raise typer.Exit(1) from None
        if as_json:
            found = {"workflow_id": workflow_id, "passed": result.passed}
            typer.echo(json.dumps({**found, **result.model_dump(mode="json")}, indent=2))
        else:
            for check in result.checks:
                mark = "ok" if check.problem_count == 0 else f"{check.problem_count} problem(s)"
                typer.echo(f"{check.name}: {mark} ({check.looked_at:,} looked at)")
                for problem in check.problems:
                    typer.echo(f"  {problem}")
        if not result.passed:
            raise typer.Exit(1)

    run(main())
