"""The snapshot job: scan every stream in batches, snapshot those far past their newest snapshot.

Orchestration only: each batch is an activity (``SnapshotBatch``) that carries on from the last
stream the one before it looked at; the workflow keeps the cursor and the totals, answers the
``status`` query, and continues as new every ``BATCHES_PER_RUN`` batches so its history stays
small however many streams there are. A run started by the ``acci-snapshots`` Schedule (or by
hand) ends when the scan reaches the last stream.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, TypeAlias

from temporalio import workflow
from temporalio.common import RawValue

from acci.workflows.batch_jobs import BATCH_RETRY, BATCHES_PER_RUN

with workflow.unsafe.imports_passed_through():
    from acci.activities.errors import JOB_INPUT_ERROR
    from acci.activities.models import (
        SNAPSHOT_WORKFLOW,
        SnapshotBatchResult,
        SnapshotJobInput,
        SnapshotJobStatus,
    )
    from acci.activities.snapshot_activities import SnapshotActivities
    from acci.workflows.inputs import NO_INPUT, decode_input


# The SDK hands run() the raw payload (workflows/inputs.py): input that does not decode fails
# the run at once (JobValidationError), not its workflow task for ever; clients type-check the
# model they send.
if TYPE_CHECKING:
    SnapshotJobArgument: TypeAlias = SnapshotJobInput
else:
    SnapshotJobArgument = RawValue


@workflow.defn(name=SNAPSHOT_WORKFLOW)
class SnapshotWorkflow:
    """Snapshots every stream that a load would fold far past its newest snapshot."""

    def __init__(self) -> None:
        self._status = SnapshotJobStatus(
            phase="scanning", after=None, scanned=0, written=0, pruned=0
        )

    @workflow.run
    async def run(self, raw: SnapshotJobArgument = NO_INPUT) -> SnapshotJobStatus:
        job = decode_input(
            raw, SnapshotJobInput, what="SnapshotWorkflow input", error_type=JOB_INPUT_ERROR
        )
        status = SnapshotJobStatus(
            phase="scanning",
            after=job.after,
            scanned=job.scanned,
            written=job.written,
            pruned=job.pruned,
        )
        self._show(status)
        if job.started_at is None:
            job = job.model_copy(update={"started_at": workflow.now()})
        for _ in range(BATCHES_PER_RUN):
            batch: SnapshotBatchResult = await workflow.execute_activity_method(
                SnapshotActivities.snapshot_batch,
                job.model_copy(update={"after": status.after}),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=15),
                retry_policy=BATCH_RETRY,
            )
            status = status.model_copy(
                update={
                    "after": batch.next_after,
                    "scanned": status.scanned + batch.scanned,
                    "written": status.written + batch.written,
                    "pruned": status.pruned + batch.pruned,
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
                    "written": status.written,
                    "pruned": status.pruned,
                }
            )
        )

    def _show(self, status: SnapshotJobStatus) -> None:
        # Also the run's current details: the Web UI shows them on its page, no query needed.
        self._status = status
        workflow.set_current_details(status.summary())

    @workflow.query
    def status(self) -> SnapshotJobStatus:
        """The phase, the last stream looked at, and the totals so far."""
        return self._status
