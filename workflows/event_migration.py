"""The event migration: rewrite stored events to their type's current version, batch by batch.

Orchestration only: each batch is an activity (``MigrateEventsBatch``) that carries on after the
last row the one before it looked at; the workflow keeps the cursor and the totals, answers the
``status`` query, and continues as new every ``BATCHES_PER_RUN`` batches so its history stays
small however many events there are. A batch commits its events and the run's record together,
so a worker killed mid-run resumes from the last committed batch (the batch it was running is
run again and finds nothing of its own done twice). An event whose upcast data its model refuses
ends the run as ``failed``, naming the event; nothing of that batch was written.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, TypeAlias

from temporalio import workflow
from temporalio.common import RawValue

from acci.workflows.batch_jobs import BATCH_RETRY, BATCHES_PER_RUN

with workflow.unsafe.imports_passed_through():
    from acci.activities.errors import JOB_INPUT_ERROR
    from acci.activities.migration_activities import MigrationActivities
    from acci.activities.models import (
        EVENT_MIGRATION_WORKFLOW,
        EventMigrationBatchResult,
        EventMigrationInput,
        EventMigrationStatus,
    )
    from acci.workflows.inputs import NO_INPUT, decode_input


# The SDK hands run() the raw payload (workflows/inputs.py): input that does not decode fails
# the run at once (JobValidationError), not its workflow task for ever; clients type-check the
# model they send.
if TYPE_CHECKING:
    EventMigrationArgument: TypeAlias = EventMigrationInput
else:
    EventMigrationArgument = RawValue


@workflow.defn(name=EVENT_MIGRATION_WORKFLOW)
class EventMigrationWorkflow:
    """Rewrites every stored event of its scope that is older than its type's current version."""

    def __init__(self) -> None:
        self._status = EventMigrationStatus(
            phase="migrating", migration_id=None, after=None, scanned=0, migrated=0, batches=0
        )

    @workflow.run
    async def run(self, raw: EventMigrationArgument = NO_INPUT) -> EventMigrationStatus:
        job = decode_input(
            raw,
            EventMigrationInput,
            what="EventMigrationWorkflow input",
            error_type=JOB_INPUT_ERROR,
        )
        if job.migration_id is None:  # the first run: it names the migration in the record
            info = workflow.info()
            job = job.model_copy(update={"migration_id": info.run_id, "started_at": workflow.now()})
        status = EventMigrationStatus(
            phase="migrating",
            migration_id=job.migration_id,
            after=job.after,
            scanned=job.scanned,
            migrated=job.migrated,
            batches=job.batches,
        )
        self._show(status)
        for _ in range(BATCHES_PER_RUN):
            batch: EventMigrationBatchResult = await workflow.execute_activity_method(
                MigrationActivities.migrate_batch,
                job.model_copy(update={"after": status.after}),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=BATCH_RETRY,
            )
            if batch.failure is not None:
                self._show(status.model_copy(update={"phase": "failed", "failure": batch.failure}))
                return self._status
            status = status.model_copy(
                update={
                    "after": batch.next_after,
                    "scanned": status.scanned + batch.scanned,
                    "migrated": status.migrated + batch.migrated,
                    "batches": status.batches + 1,
                }
            )
            self._show(status)
            if batch.next_after is None:
                self._show(status.model_copy(update={"phase": "done"}))
                return self._status
        workflow.continue_as_new(
            job.model_copy(
                update={
                    "after": status.after,
                    "scanned": status.scanned,
                    "migrated": status.migrated,
                    "batches": status.batches,
                }
            )
        )

    def _show(self, status: EventMigrationStatus) -> None:
        # Also the run's current details: the Web UI shows them on its page, no query needed.
        self._status = status
        workflow.set_current_details(status.summary())

    @workflow.query
    def status(self) -> EventMigrationStatus:
        """The phase, the last row looked at, the totals so far, and a failing event if any."""
        return self._status
