"""The projection workflow's activities: run a batch, pause or resume, resolve a parked event."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from temporalio import activity

from acci.activities.errors import application_error
from acci.activities.models import (
    DeadLetterInput,
    DeadLetterResult,
    ProjectionBatchInput,
    ProjectionBatchResult,
    ProjectionFailure,
    ProjectionPauseInput,
)
from acci.eventstore.records import Position
from acci.readmodels.errors import NotFoundError, ProjectionError
from acci.readmodels.lag import Lag
from acci.readmodels.reports import BatchReport, EventFailure
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.transaction import Parking
from acci.readmodels.wakeups import Appended

log = logging.getLogger(__name__)


def failure_model(failure: EventFailure | None) -> ProjectionFailure | None:
    """A runner's event failure as the workflow's model."""
    if failure is None:
        return None
    event = failure.event
    if event is None:
        return ProjectionFailure(event_id=None, error=failure.error)
    return ProjectionFailure(
        event_id=event.event_id,
        event_type=event.event_type,
        tenant_id=event.tenant_id,
        position=str(event.position),
        error=failure.error,
    )


def standing(position: Position, lag: Lag) -> dict[str, Any]:
    """A position and its measured lag as ``ProjectionStanding``'s fields (the one place that
    maps them; the workflow's status takes them from the batch's result as they are)."""
    stall = lag.stall
    return {
        "position": str(position),
        "head": str(lag.head),
        "lag_events": lag.events,
        "lag_seconds": lag.seconds,
        "stalled": stall is not None,
        "stall_seconds": stall.seconds if stall else 0.0,
        "stall_pid": stall.pid if stall else None,
    }


def batch_result(report: BatchReport) -> ProjectionBatchResult:
    """A runner's report as the workflow's result model."""
    return ProjectionBatchResult(
        **standing(report.position, report.lag),
        projection=report.projection,
        applied=report.applied,
        paused=report.paused,
        caught_up=report.caught_up,
        last_error=report.last_error,
        failure=failure_model(report.failure),
        parked=failure_model(report.parked),
    )


class ProjectionActivities:
    """Activities holding one runner per projection; each is safe to run twice."""

    def __init__(
        self,
        *,
        runners: Iterable[ProjectionRunner],
        appended: Appended | None = None,
        on_report: Callable[[ProjectionBatchResult], None] | None = None,
        quiet: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self._runners = {runner.name: runner for runner in runners}
        self._appended = appended or Appended()
        self._on_report = on_report
        # What a waiting batch's polls of the store run inside (tracing keeps them untraced).
        self._quiet = quiet

    def _runner(self, name: str) -> ProjectionRunner:
        try:
            return self._runners[name]
        except KeyError:
            raise application_error(
                ProjectionError(
                    f"no projection {name!r} on this worker; it runs {sorted(self._runners)}"
                )
            ) from None

    @activity.defn(name="RunProjectionBatch")
    async def run_batch(self, request: ProjectionBatchInput) -> ProjectionBatchResult:
        """Apply the events after the checkpoint, exactly once, batch by batch while new ones
        are appended (for up to ``wait_seconds`` once caught up); report position, head, lag."""
        runner = self._runner(request.projection)
        report = await runner.run_batches(
            limit=request.batch_size,
            wait_seconds=request.wait_seconds,
            report_seconds=request.report_seconds,
            gather_seconds=request.gather_seconds,
            poll_seconds=request.poll_seconds,
            quiet=self._quiet,
            appended=self._appended,
            parking=Parking(
                event_id=request.park_event_id,
                attempts=request.attempts,
                policy=request.on_failure,
            ),
            heartbeat=activity.heartbeat,
        )
        result = batch_result(report)
        if self._on_report is not None:
            self._on_report(result)
        return result

    @activity.defn(name="SetProjectionPaused")
    async def set_paused(self, request: ProjectionPauseInput) -> ProjectionBatchResult:
        """Pause or resume the projection's checkpoint; returns where it stands."""
        runner = self._runner(request.projection)
        report = await runner.set_paused(request.paused)
        log.info(
            "projection paused" if request.paused else "projection resumed",
            extra={"projection": runner.name, "position": str(report.position)},
        )
        return batch_result(report)

    @activity.defn(name="RetryDeadLetter")
    async def retry_dead_letter(self, request: DeadLetterInput) -> DeadLetterResult:
        """Apply a parked event once more (exactly once) and mark it retried."""
        runner = self._runner(request.projection)
        try:
            changes = await runner.retry_dead_letter(request.event_id)
        except (ProjectionError, NotFoundError) as e:
            raise application_error(e) from e
        return DeadLetterResult(
            projection=runner.name,
            event_id=request.event_id,
            resolution="retried",
            changes=changes,
        )

    @activity.defn(name="SkipDeadLetter")
    async def skip_dead_letter(self, request: DeadLetterInput) -> DeadLetterResult:
        """Mark a parked event skipped (a projection paused at it moves past it)."""
        runner = self._runner(request.projection)
        try:
            await runner.skip_dead_letter(request.event_id)
        except (ProjectionError, NotFoundError) as e:
            raise application_error(e) from e
        return DeadLetterResult(
            projection=runner.name, event_id=request.event_id, resolution="skipped"
        )
