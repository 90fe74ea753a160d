"""``acci migrate-events``: start (or join) the event migration and print its totals.

Named ``migrate-events`` beside ``publish-events``, not ``events migrate``: ``acci events
<aggregate-id>`` prints a stream, so ``acci events migrate`` would read as the stream ``migrate``.
The work is ``EventMigrationWorkflow`` (workflows/event_migration.py) on the worker's task queue;
a second start of the same scope while one runs joins it rather than starting another.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from acci.workers.cli_support import JsonOption, checked_tenant, run, setup
from acci.workers.settings import get_settings


def migrate_events(
    event_types: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this event type (repeat for more); default: every one."),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant", "-t", help="Only this tenant; default: every one.", callback=checked_tenant
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Stored rows per batch.")
    ] = 1_000,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the workflow id and return at once.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rewrite stored events to their type's current version (resumable; a second run changes
    nothing), validating each; prints how many were migrated."""
    setup()
    types = tuple(sorted(set(event_types or ())))

    async def main() -> None:
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

        from acci.activities.models import (
            EVENT_MIGRATION_WORKFLOW,
            EventMigrationInput,
            EventMigrationStatus,
            event_migration_workflow_id,
        )
        from acci.domain.registry import registry
        from acci.eventstore.event_migration import current_versions
        from acci.workers.temporal_client import connect

        current_versions(registry, types)  # an unknown --type: a typed error, nothing started
        settings = get_settings()
        client = await connect(settings)
        workflow_id = event_migration_workflow_id(tenant, types)
        handle = await client.start_workflow(
            EVENT_MIGRATION_WORKFLOW,
            EventMigrationInput(tenant_id=tenant, event_types=types, events_per_batch=batch_size),
            id=workflow_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        if no_wait:
            _show({"workflow_id": workflow_id, "run_id": handle.result_run_id}, as_json)
            return
        result = EventMigrationStatus.model_validate(await handle.result())
        _show_result(workflow_id, result.model_dump(mode="json"), as_json)

    run(main())


def _show(found: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    else:
        typer.echo(f"started event migration {found['workflow_id']} (run {found['run_id']})")


def _show_result(workflow_id: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"workflow_id": workflow_id, **result}, indent=2))
    failure = result.get("failure")
    if failure:
        if not as_json:
            typer.echo(
                f"error (validation): event {failure['event_id']} ({failure['event_type']}"
                f" version {failure['event_version']}, tenant {failure['tenant_id']}) cannot be"
                f" migrated: {failure['error']}; its batch wrote nothing"
                f" ({result['migrated']} event(s) migrated before it)",
                err=True,
            )
        raise typer.Exit(1)
    if not as_json:
        typer.echo(
            f"migrated {result['migrated']} event(s) of {result['scanned']} stored,"
            f" in {result['batches']} batch(es) (migration {result['migration_id']},"
            f" workflow {workflow_id})"
        )
