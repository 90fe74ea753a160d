"""Starting the projections' long-running workflows at worker boot, and whose runs they are.

A projection's workflow id is the same in every deployment (``projection-tenants``). A worker
that finds its projection's run on another task queue takes it over: its progress lives in the
checkpoint row, not in the run, and the queue is most likely its deployment's old one. It keeps
doing so while it runs (``ACCI_PROJECTION_GUARD_S``), so that a run another worker took away is
taken back once that worker is gone, instead of waiting there for a worker that never comes.

Each run carries, in its memo, the database it projects (``deployment``: server and database,
no credentials). A run of another database means two deployments share the Temporal namespace:
they would take the projections from each other in turn, so the worker says so at error level
each time (give each deployment its own ``ACCI_TEMPORAL_NAMESPACE``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

from psycopg.conninfo import conninfo_to_dict
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from acci.activities.models import ProjectionConfig, ProjectionInput, projection_workflow_id
from acci.workflows.projection import ProjectionWorkflow

log = logging.getLogger(__name__)

DEPLOYMENT: Final = "deployment"


def deployment_of(database_url: str) -> str:
    """The deployment a database URL names: ``host:port/database`` (no user, no password)."""
    params = conninfo_to_dict(database_url)
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user')}"


async def start_projections(
    client: Client,
    configs: Sequence[ProjectionConfig],
    *,
    task_queue: str,
    deployment: str,
) -> None:
    """Start each projection's workflow, or send the running one this config (idempotent); a
    run on another task queue is terminated and started here."""
    for config in configs:
        workflow_id = projection_workflow_id(config.name)
        await _take_over(client, workflow_id, task_queue, deployment)
        # Signal-with-start: starts the run if none is running, else only signals it.
        await client.start_workflow(
            ProjectionWorkflow.run,
            ProjectionInput(config=config),
            id=workflow_id,
            task_queue=task_queue,
            start_signal="configure",
            start_signal_args=[config],
            memo={DEPLOYMENT: deployment},
            static_summary=f"projection {config.name}: keeps its read model up to date",
        )


async def _take_over(client: Client, workflow_id: str, task_queue: str, deployment: str) -> None:
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        return
    if description.task_queue == task_queue:
        return
    # Runs started before the memo existed name no deployment: taken to be this one's.
    try:
        theirs = await description.memo_value(DEPLOYMENT, default=deployment)
    except Exception:  # a memo this worker cannot decode: another deployment's payload codec
        theirs = "(a deployment whose memo this worker cannot read)"
    if theirs != deployment:
        log.error(
            "two deployments share a Temporal namespace: taking over another database's"
            " projection run (give each deployment its own ACCI_TEMPORAL_NAMESPACE)",
            extra={
                "workflow_id": workflow_id,
                "namespace": client.namespace,
                "task_queue": description.task_queue,
                "their_database": theirs,
                "our_database": deployment,
            },
        )
    else:
        log.warning(
            "taking over a projection run of another task queue",
            extra={"workflow_id": workflow_id, "task_queue": description.task_queue},
        )
    try:
        await handle.terminate(reason=f"taken over by a worker on task queue {task_queue}")
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise


async def guard_projections(
    client: Client,
    configs: Sequence[ProjectionConfig],
    *,
    task_queue: str,
    deployment: str,
    every: float,
) -> None:
    """Every ``every`` seconds, take back a projection run another worker took to its task
    queue (until cancelled). A run that is not running (an operator terminated it, a projection
    retired) is left as it is."""
    while True:
        await asyncio.sleep(every)
        for config in configs:
            handle = client.get_workflow_handle(projection_workflow_id(config.name))
            try:
                description = await handle.describe()
            except RPCError:
                continue  # not there, or Temporal not answering: looked at again next time
            running = description.status == WorkflowExecutionStatus.RUNNING
            if running and description.task_queue != task_queue:
                try:
                    await start_projections(
                        client, [config], task_queue=task_queue, deployment=deployment
                    )
                except RPCError as e:  # tried again next time
                    log.warning(
                        "could not take a projection run back",
                        extra={"projection": config.name, "error": str(e)},
                    )
