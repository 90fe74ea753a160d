"""The ACCI worker: the command workflow, the projection workflows, the snapshot job and the
event migration, with their activities."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Final

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from acci.activities.backup_activities import BackupActivities, backup_activities
from acci.activities.command_activities import CommandActivities
from acci.activities.command_handler import CommandHandler
from acci.activities.migration_activities import MigrationActivities
from acci.activities.models import ProjectionConfig
from acci.activities.projection_activities import ProjectionActivities
from acci.activities.rebuild_activities import RebuildActivities, rebuild_activities
from acci.activities.snapshot_activities import SnapshotActivities
from acci.activities.verify_activities import VerifyActivities, verify_activities
from acci.eventstore.audit import AuditLog
from acci.eventstore.db import conninfo
from acci.eventstore.errors import MessagingError
from acci.eventstore.keyring import SHRED_CHANNEL
from acci.eventstore.messaging.publisher import EventPublisher
from acci.eventstore.repository import AggregateRepository
from acci.readmodels.batch import OnCommitted
from acci.readmodels.cache import QueryCache
from acci.readmodels.installed import default_projections
from acci.readmodels.projections import Projection
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.wakeups import Appended, AppendListener, AppendNotifier
from acci.workers.http_endpoint import http_endpoint, readiness_on_loop
from acci.workers.interceptors import BindLogContext, ObserveActivities, WakeProjectionsAfterAppend
from acci.workers.metrics import worker_metrics
from acci.workers.metrics_commands import CommandMetrics
from acci.workers.metrics_projections import ProjectionActivity
from acci.workers.projection_runs import deployment_of, guard_projections, start_projections
from acci.workers.runtime import EventStoreRuntime, open_event_store, query_cache
from acci.workers.settings import Settings
from acci.workers.tracing import untraced, untraced_polls, worker_interceptors
from acci.workflows.backup import BackupWorkflow, RestoreWorkflow, VerifyWorkflow
from acci.workflows.command import CommandWorkflow
from acci.workflows.event_migration import EventMigrationWorkflow
from acci.workflows.projection import ProjectionWorkflow
from acci.workflows.rebuild import RebuildReadModelWorkflow
from acci.workflows.snapshots import SnapshotWorkflow

log = logging.getLogger(__name__)

# Modules the workflow sandbox takes from the worker instead of importing them afresh for every
# workflow run. The sandbox re-imports a workflow's module per run so that module state cannot
# leak between runs and so that the module's calls are checked for determinism; for
# CommandWorkflow, one short run per command, that import cost ACCI 0.75x the throughput at
# 1.24x the CPU per command (bench/commands_bench.py, "module re-imported"). Each module listed
# is deterministic, does no I/O, and holds no state that changes after import (constants, frozen
# pydantic models, functions of their arguments), so sharing it across runs changes nothing a
# run can observe:
# - workflows.command: CommandWorkflow itself (constants, the class, search-attribute helpers);
#   it calls nothing but the workflow API, its own helpers and the modules below.
# - workflows.inputs, activities.models, workflows.steps: input decoding, the frozen inputs and
#   results, and the local-activity call helper.
# - domain: pure aggregates, commands, events and errors (pydantic, no clock, no I/O).
# What is given up: the sandbox no longer checks calls made by these modules' code (their
# imports are the real modules). tests/workflows/test_command_sandbox.py runs a command under
# the SDK's default sandbox, so the workflow keeps passing those checks. Not listed:
# workflows.projection (one long-running run per projection: its import is rare, and it keeps
# the checks), the rest of activities and eventstore (they do I/O; workflows only name them, inside
# workflow.unsafe.imports_passed_through()).
SANDBOX_PASSTHROUGH: Final = (
    "acci.workflows.command",
    "acci.workflows.inputs",
    "acci.activities.models",
    "acci.workflows.steps",
    "acci.domain",
)


def workflow_runner(passthrough: Sequence[str] = SANDBOX_PASSTHROUGH) -> SandboxedWorkflowRunner:
    """The default workflow sandbox, with ``passthrough`` shared rather than re-imported."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*passthrough)
    )


@asynccontextmanager
async def running_worker(
    settings: Settings,
    client: Client,
    *,
    projections: Sequence[Projection] | None = None,
    on_committed: OnCommitted | None = None,
    sandbox_passthrough: Sequence[str] = SANDBOX_PASSTHROUGH,
) -> AsyncIterator[Worker]:
    """A worker polling the task queue until the block exits (then drained).

    It runs commands and keeps ``projections`` (default: every projection) up to date: their
    workflows are started, or found running and sent this worker's config, once it polls.
    After each projection commit the query cache's answers about the changed tenants are
    invalidated, then ``on_committed`` (if given) is called with those tenants.
    ``sandbox_passthrough``: the modules the workflow sandbox shares instead of re-importing
    (``()``: the SDK's default sandbox, as strict as it gets).
    """
    # Before any connection opens: only those opened afterwards are traced.
    tracing = worker_interceptors(settings, client)
    async with open_event_store(settings) as rt, query_cache(settings) as cache:
        publisher = EventPublisher(settings.rabbitmq_url.get_secret_value())
        try:
            await asyncio.to_thread(publisher.declare)
        except MessagingError as e:
            # Commands still run; their publish step retries until RabbitMQ is back.
            log.warning("RabbitMQ is not reachable yet", extra={"error": str(e)})
        command_metrics = CommandMetrics(tenant_labels=settings.metrics_tenant_labels)
        batches = ProjectionActivity()
        activities = CommandActivities(
            # Tenant-scoped: as acci_app, each transaction sees only its command's tenant.
            handler=CommandHandler(
                rt.app.store,
                rt.app.repository,
                conflict_budget_seconds=settings.command_conflict_budget_ms / 1000,
                on_conflict=command_metrics.conflict,
            ),
            store=rt.app.store,
            publisher=publisher,
            # Each attempt is written in its command's tenant (tenant_scope.scoped): the same
            # code under the owner's pool or acci_app's.
            audit=AuditLog(rt.app.pool),  # as acci_app: the log is append-only for it
        )
        projections = default_projections() if projections is None else list(projections)
        appended = Appended()
        listen_conninfo = conninfo(
            settings.database_url.get_secret_value(),
            idle_in_transaction_timeout_ms=settings.db_idle_in_transaction_timeout_ms,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        notifier = AppendNotifier(
            rt.pool, appended, interval=settings.projection_wake_interval_ms / 1000
        )

        def committed(projection: str) -> OnCommitted:
            async def invalidate(tenants: set[str]) -> None:
                await cache.invalidate(projection, tenants)
                if on_committed is not None:
                    await on_committed(tenants)

            return invalidate

        projection_activities = ProjectionActivities(
            runners=[
                ProjectionRunner(p, rt.store, on_committed=committed(p.name)) for p in projections
            ],
            appended=appended,
            on_report=batches.reported,
            quiet=untraced_polls(),
        )
        snapshot_activities = SnapshotActivities(
            pool=rt.pool,
            # Its own repository: the job snapshots explicitly, not through the load policy.
            repository=AggregateRepository(rt.store, rt.snapshots),
            min_events=settings.snapshot_job_min_events,
            min_events_by_type=settings.snapshot_job_min_events_by_type,
            keep=settings.snapshot_keep,
        )
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[
                CommandWorkflow,
                ProjectionWorkflow,
                SnapshotWorkflow,
                EventMigrationWorkflow,
                RebuildReadModelWorkflow,
                BackupWorkflow,
                RestoreWorkflow,
                VerifyWorkflow,
            ],
            activities=[
                activities.run,
                projection_activities.run_batch,
                projection_activities.set_paused,
                projection_activities.retry_dead_letter,
                projection_activities.skip_dead_letter,
                snapshot_activities.snapshot_batch,
                MigrationActivities(pool=rt.pool).migrate_batch,
                *rebuild_activities(RebuildActivities(rt.store, cache)),
                *backup_activities(
                    BackupActivities(
                        rt.store,
                        settings.backup_dir,
                        keep_chains=settings.backup_keep_chains,
                        cache=cache,
                        publisher=publisher,
                    )
                ),
                *verify_activities(
                    VerifyActivities(rt.store, AggregateRepository(rt.store, rt.snapshots))
                ),
            ],
            interceptors=[
                BindLogContext(payloads=settings.log_payloads),
                WakeProjectionsAfterAppend(notifier),
                ObserveActivities(command_metrics, batches),
                *tracing,
            ],
            workflow_runner=workflow_runner(sandbox_passthrough),
            max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            max_concurrent_local_activities=settings.worker_max_concurrent_activities,
            # On SIGINT/SIGTERM, in-flight activities get this long to finish.
            graceful_shutdown_timeout=timedelta(seconds=10),
        )
        try:
            with (
                worker_metrics(settings, [p.name for p in projections], batches),
                http_endpoint(
                    settings.metrics_host,
                    settings.metrics_port,
                    ready=readiness_on_loop(settings, client),
                ),
            ):
                async with (
                    AppendListener(
                        listen_conninfo, appended, also={SHRED_CHANNEL: forget_keys(rt)}
                    ),
                    _flushing(cache),
                    worker,
                ):
                    configs = [projection_config(settings, p) for p in projections]
                    runs = {
                        "task_queue": settings.task_queue,
                        "deployment": deployment_of(settings.database_url.get_secret_value()),
                    }
                    await start_projections(untraced(client), configs, **runs)
                    guard = asyncio.create_task(
                        guard_projections(
                            untraced(client), configs, every=settings.projection_guard_s, **runs
                        )
                    )
                    log.info(
                        "worker polling",
                        extra={
                            "task_queue": settings.task_queue,
                            "temporal": settings.temporal_address,
                            "projections": [p.name for p in projections],
                        },
                    )
                    try:
                        yield worker
                    finally:
                        guard.cancel()
                        # Batches waiting for appends return now, so the worker stops at once.
                        appended.close()
        finally:
            await notifier.aclose()
            await asyncio.to_thread(publisher.close)
            log.info("worker stopped", extra={"task_queue": settings.task_queue})


def forget_keys(rt: EventStoreRuntime) -> Callable[[str | None], None]:
    """What a shred's notification does here: both key rings forget the tenant's cached key
    (every tenant's, after a reconnect that may have missed one), so its payloads are neither
    sealed nor opened from here again."""
    rings = [s.encryption.keyring for s in (rt.store, rt.app.store)]

    def forget(tenant: str | None) -> None:
        for ring in rings:
            if ring is not None:
                ring.forget(tenant or None)

    return forget


@asynccontextmanager
async def _flushing(cache: QueryCache) -> AsyncIterator[None]:
    # Invalidations that Redis missed during an outage are sent as soon as it answers again
    # (the cache's retry_after allowing), not only with the next commit: other processes read
    # the cache meanwhile. flush() costs nothing while nothing is pending.
    async def flush_forever() -> None:
        while True:
            await asyncio.sleep(0.5)
            await cache.flush()

    task = asyncio.create_task(flush_forever(), name="query-cache-flush")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def projection_config(settings: Settings, projection: Projection) -> ProjectionConfig:
    """How ``projection`` runs, from the settings and its own failure policy."""
    return ProjectionConfig(
        name=projection.name,
        batch_size=settings.projection_batch_size,
        max_attempts=settings.projection_max_attempts,
        retry_initial_seconds=settings.projection_retry_initial_ms / 1000,
        retry_max_seconds=settings.projection_retry_max_ms / 1000,
        on_failure=projection.on_failure,
        idle_seconds=settings.projection_idle_ms / 1000,
        poll_seconds=settings.projection_poll_ms / 1000,
        gather_seconds=settings.projection_wake_interval_ms / 1000,
    )
