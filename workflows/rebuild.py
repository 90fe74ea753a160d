"""The blue/green rebuild of one read model into a new version (``RebuildReadModelWorkflow``).

Orchestration only; each step is an activity of ``activities/rebuild_activities.py``:

1. ``start``: version N's tables beside the live ones, its own checkpoint at 0;
2. ``project`` until caught up: every event from position 0, in batches, while the live version
   keeps serving (the run continues as new every ``BATCHES_PER_RUN`` activities);
3. ``validate``: against a fold of the event store; a mismatch stops here (``failed``, the
   live version untouched, the first differing rows in the error and the status);
4. ``switch``: under the live checkpoint's lock, N is brought to the live position, compared
   with the live version where the shape is the same, and made live with its views; the cache
   is invalidated;
5. the old version is kept ``grace_seconds`` (a durable timer), then dropped.

Its workflow id is one per read model and version (``rebuild-<name>-v<N>``): starting it again
joins the running one. Cancelled before the switch, it drops version N's tables. The phase, the
position, the head, events/s and the ETA are in the ``status`` query and in the workflow's
current details (the Web UI shows them on the workflow's page).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Final, TypeAlias, TypeVar

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

from acci.workflows.batch_jobs import BATCH_RETRY, BATCHES_PER_RUN

with workflow.unsafe.imports_passed_through():
    from acci.activities.errors import JOB_INPUT_ERROR
    from acci.activities.rebuild_activities import VALIDATION_FAILED, RebuildActivities
    from acci.activities.rebuild_models import (
        REBUILD_WORKFLOW,
        RebuildInput,
        RebuildPhase,
        RebuildProgress,
        RebuildStatus,
        SwitchResult,
        ValidationResult,
    )
    from acci.workflows.inputs import NO_INPUT, decode_input


# The SDK hands run() the raw payload (workflows/inputs.py): input that does not decode fails
# the run at once (JobValidationError), not its workflow task for ever; clients type-check the
# model they send.
if TYPE_CHECKING:
    RebuildArgument: TypeAlias = RebuildInput
else:
    RebuildArgument = RawValue
R = TypeVar("R")

_STEP: Final = timedelta(minutes=30)
# A killed worker's step is retried this long after its last heartbeat.
_HEARTBEAT: Final = timedelta(seconds=15)
# The live projection is behind the rebuild when it tries to switch: wait this long and retry.
_SWITCH_WAIT: Final = timedelta(seconds=1)


@workflow.defn(name=REBUILD_WORKFLOW)
class RebuildReadModelWorkflow:
    """Rebuilds a read model into a new version and switches queries to it."""

    def __init__(self) -> None:
        self._status: RebuildStatus | None = None

    @workflow.run
    async def run(self, raw: RebuildArgument = NO_INPUT) -> RebuildStatus:
        job = decode_input(
            raw, RebuildInput, what="RebuildReadModelWorkflow input", error_type=JOB_INPUT_ERROR
        )
        if job.started_at is None:
            job = job.model_copy(update={"started_at": workflow.now()})
        self._status = RebuildStatus(
            read_model=job.read_model,
            version=job.version,
            phase="starting" if not job.started else "projecting",
            started_at=job.started_at,
        )
        self._show()
        try:
            job = await self._project(job)
            self._phase("validating")
            self._checked(await self._step(RebuildActivities.validate, job))
            self._phase("switching")
            switch = await self._switch(job)
            self._status = self._now().model_copy(
                update={"retired": switch.retired, "drop_after": switch.drop_after}
            )
            _stop_if_cancelled()  # came during the switch: the old version is kept, retired
            if switch.retired is not None:
                self._phase("retiring")
                await workflow.sleep(timedelta(seconds=job.grace_seconds))
                await workflow.execute_activity_method(
                    RebuildActivities.retire,
                    args=[job, switch.retired],
                    start_to_close_timeout=_STEP,
                    retry_policy=BATCH_RETRY,
                )
            self._phase("done")
            return self._now()
        except asyncio.CancelledError:
            await self._cancelled(job)
            raise
        except Exception as e:
            self._status = self._now().model_copy(update={"error": _message(e)})
            self._phase("failed")
            raise

    async def _project(self, job: RebuildInput) -> RebuildInput:
        """Start (once), then project until caught up; continues as new after
        ``BATCHES_PER_RUN`` steps, so the history stays small however long it takes."""
        if not job.started:
            self._progressed(await self._step(RebuildActivities.start, job), "projecting")
            job = job.model_copy(update={"started": True})
        for _ in range(BATCHES_PER_RUN):
            progress = await self._step(RebuildActivities.project, job)
            job = job.model_copy(update={"applied": progress.applied})
            self._progressed(progress, "projecting")
            if progress.caught_up:
                return job
        workflow.continue_as_new(job)

    async def _cancelled(self, job: RebuildInput) -> None:
        """Drop the new version unless it went live (then it stays, and the status says so)."""
        dropped = False
        if not self._now().switched:
            dropped = await workflow.execute_activity_method(
                RebuildActivities.abandon,
                job,
                start_to_close_timeout=_STEP,
                retry_policy=BATCH_RETRY,
            )
        if not dropped:  # the switch had committed: the new version is live
            note = f"cancelled after version {job.version} went live; it stays live"
            self._status = self._now().model_copy(update={"error": note})
        self._phase("cancelled")

    async def _step(
        self,
        method: Callable[[RebuildActivities, RebuildInput], Awaitable[R]],
        job: RebuildInput,
    ) -> R:
        result: R = await workflow.execute_activity_method(
            method,
            job,
            start_to_close_timeout=_STEP,
            heartbeat_timeout=_HEARTBEAT,
            retry_policy=BATCH_RETRY,
            # Cancelled, the workflow waits for the step to end before it abandons the version.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        _stop_if_cancelled()
        return result

    async def _switch(self, job: RebuildInput) -> SwitchResult:
        """Switch, waiting for a live projection that is behind the rebuild to pass it."""
        while True:
            result: SwitchResult = await workflow.execute_activity_method(
                RebuildActivities.switch,
                job,
                start_to_close_timeout=_STEP,
                heartbeat_timeout=_HEARTBEAT,
                retry_policy=BATCH_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            if not result.switched:
                _stop_if_cancelled()
            if result.validation is not None:
                self._checked(result.validation)
            if result.switched:
                self._status = self._now().model_copy(update={"switched": True})
                return result
            await workflow.sleep(_SWITCH_WAIT)

    def _checked(self, result: ValidationResult) -> None:
        status = self._now()
        self._status = status.model_copy(
            update={"validation": [*status.validation, *result.checks]}
        )
        if not result.passed:
            bad = [c for c in result.checks if not c.equal]
            first = bad[0]
            raise ApplicationError(
                f"version {status.version} of {status.read_model!r} differs from the"
                f" {first.against} in {', '.join(c.table for c in bad)}:"
                f" {first.found_rows} rows (expected {first.expected_rows}); the live version"
                " is untouched and serving",
                [c.model_dump(mode="json") for c in bad],
                type=VALIDATION_FAILED,
                non_retryable=True,
            )

    def _progressed(self, progress: RebuildProgress, phase: RebuildPhase) -> None:
        self._status = self._now().model_copy(
            update={"progress": progress, "eta_seconds": progress.eta_seconds}
        )
        self._phase(phase)

    def _phase(self, phase: RebuildPhase) -> None:
        self._status = self._now().model_copy(update={"phase": phase, "updated_at": workflow.now()})
        self._show()

    def _show(self) -> None:
        workflow.set_current_details(self._now().summary())

    def _now(self) -> RebuildStatus:
        assert self._status is not None
        return self._status

    @workflow.query
    def status(self) -> RebuildStatus | None:
        """The phase, the progress (position, head, events/s, ETA), the checks, the outcome."""
        return self._status


def _stop_if_cancelled() -> None:
    """A cancel that came while a step ran (the workflow waited for the step to end: it
    finished rather than stopping) takes effect now, before the next step."""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError


def _message(e: BaseException) -> str:
    cause = e.cause if isinstance(e, ActivityError) and e.cause else e
    return str(cause) or type(cause).__name__
