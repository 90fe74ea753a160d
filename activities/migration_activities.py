"""The event migration's activity: one batch of stored events rewritten to their current version;
safe to run twice.

The batch is one transaction in the store (``eventstore/event_migration.py``), with the run's
record: a batch retried after its commit finds its events migrated already and changes and
counts nothing. An event its model refuses stops the batch with nothing written; it comes back
in the result (the workflow reports it and stops), since retrying cannot change the answer.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool
from temporalio import activity

from acci.activities.errors import application_error
from acci.activities.models import (
    EventMigrationBatchResult,
    EventMigrationFailure,
    EventMigrationInput,
)
from acci.domain.registry import EventRegistry
from acci.domain.registry import registry as default_registry
from acci.eventstore.errors import EventStoreValidationError
from acci.eventstore.event_migration import EventMigrationError, MigrationRun, migrate_batch

log = logging.getLogger(__name__)


class MigrationActivities:
    """Holds the store's pool and the event registry the migration upcasts with."""

    def __init__(
        self, *, pool: AsyncConnectionPool, registry: EventRegistry = default_registry
    ) -> None:
        self._pool = pool
        self._registry = registry

    @activity.defn(name="MigrateEventsBatch")
    async def migrate_batch(self, request: EventMigrationInput) -> EventMigrationBatchResult:
        """Migrate the events of the next ``events_per_batch`` rows after ``request.after``."""
        info = activity.info()
        run = MigrationRun(
            migration_id=request.migration_id or info.workflow_run_id or info.activity_id,
            workflow_id=info.workflow_id or "",
            started_at=request.started_at or datetime.now(UTC),
            tenant_id=request.tenant_id,
            event_types=request.event_types,
        )
        activity.heartbeat(request.after)
        try:
            outcome = await migrate_batch(
                self._pool,
                self._registry,
                run,
                after=request.after,
                scan=request.events_per_batch,
            )
        except EventMigrationError as e:
            log.error(
                "event migration stopped: an event does not validate",
                extra={
                    "event_id": str(e.row.event_id),
                    "tenant_id": e.row.tenant_id,
                    "error": e.problem,
                },
            )
            return EventMigrationBatchResult(
                next_after=request.after,
                scanned=0,
                migrated=0,
                failure=EventMigrationFailure(
                    event_id=e.row.event_id,
                    tenant_id=e.row.tenant_id,
                    event_type=e.row.event_type,
                    event_version=e.row.event_version,
                    error=e.problem,
                ),
            )
        except EventStoreValidationError as e:  # an unknown type named: not worth a retry
            raise application_error(e) from e
        log.info(
            "event migration batch done",
            extra={
                "migration_id": run.migration_id,
                "scanned": outcome.scanned,
                "migrated": outcome.migrated,
                "steps": {f"{t} v{f}->v{v}": n for (t, f, v), n in outcome.steps.items()},
                "next_after": list(outcome.next_after) if outcome.next_after else None,
            },
        )
        return EventMigrationBatchResult(
            next_after=outcome.next_after, scanned=outcome.scanned, migrated=outcome.migrated
        )
