"""The read-model rebuild's activities: each step of ``readmodels/rebuild.py`` as a Temporal
activity, with heartbeats, progress metrics and typed errors.

Every step is safe to run again: ``start`` drops what an earlier attempt left and starts over
(it runs once per rebuild, before anything is projected); ``project`` carries on from the
rebuild's checkpoint; the checks write nothing the rebuild reads; ``switch`` and the drops are
one transaction each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final, Literal, TypeVar

from prometheus_client import Counter, Enum, Gauge
from temporalio import activity
from temporalio.exceptions import ApplicationError

from acci.activities.heartbeats import heartbeating, to_the_end
from acci.activities.rebuild_models import (
    RebuildInput,
    RebuildProgress,
    RowDifferenceModel,
    SwitchResult,
    TableCheck,
    ValidationResult,
)
from acci.eventstore.records import Position
from acci.eventstore.store import EventStore
from acci.readmodels.cache import QueryCache
from acci.readmodels.errors import UnknownReadModelError
from acci.readmodels.installed import read_model
from acci.readmodels.rebuild import Rebuild, RebuildFailedError, retire
from acci.readmodels.reports import BatchReport
from acci.readmodels.validation import FoldError, TableComparison
from acci.readmodels.versions import ReadModelVersionError

log = logging.getLogger(__name__)

T = TypeVar("T")

REBUILD_POSITION: Final = Gauge(
    "acci_rebuild_position",
    "A running rebuild's position in the global order (its global_position)",
    ["read_model", "version"],
)
REBUILD_REMAINING: Final = Gauge(
    "acci_rebuild_remaining_events",
    "Events a running rebuild has still to project (estimated from the global position)",
    ["read_model", "version"],
)
REBUILD_RATE: Final = Gauge(
    "acci_rebuild_events_per_second",
    "How fast a running rebuild projects events, over its last activity",
    ["read_model", "version"],
)
REBUILD_PHASE: Final = Enum(
    "acci_rebuild_phase",
    "The step a rebuild is at in this worker (switched: its version went live)",
    ["read_model", "version"],
    states=["starting", "projecting", "validating", "switching", "switched", "failed"],
)
REBUILD_APPLIED: Final = Counter(
    "acci_rebuild_events", "Events rebuilds projected into new versions", ["read_model"]
)
REBUILD_SWITCHES: Final = Counter(
    "acci_rebuild_switches", "Rebuilds that switched a read model's live version", ["read_model"]
)

# How long one ``project`` activity runs before it reports (the workflow records the progress).
PROJECT_SECONDS: Final = 20.0
# A failing event is tried this many times before it is parked as the projection's policy says.
ATTEMPTS_BEFORE_PARKING: Final = 3
VALIDATION_FAILED: Final = "RebuildValidationError"
REBUILD_FAILED: Final = "RebuildFailedError"


class RebuildActivities:
    """Holds the event store and the query cache (invalidated when a rebuild switches)."""

    def __init__(self, store: EventStore, cache: QueryCache | None = None) -> None:
        self._store = store
        self._cache = cache

    def _rebuild(self, job: RebuildInput) -> Rebuild:
        """The rebuild ``job`` names; a read model no application installs is ``NotFoundError``,
        not retried (a plain Temporal start can name any)."""
        try:
            model = read_model(job.read_model)
        except UnknownReadModelError as e:
            raise ApplicationError(str(e), type="NotFoundError", non_retryable=True) from e
        return Rebuild(self._store, model, job.version)

    @activity.defn(name="start_rebuild")
    async def start(self, job: RebuildInput) -> RebuildProgress:
        """Create the new version's tables and checkpoint (dropping an earlier attempt's)."""
        rebuild = self._rebuild(job)
        _phase(job, "starting")
        try:
            async with heartbeating("starting"):
                await to_the_end(rebuild.start())
        except ReadModelVersionError as e:
            raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
        log.info(
            "rebuild started",
            extra={"read_model": job.read_model, "version": job.version, "tables": rebuild.tables},
        )
        return await self._progress(rebuild, job.applied, 0.0, caught_up=False)

    @activity.defn(name="project_rebuild")
    async def project(self, job: RebuildInput) -> RebuildProgress:
        """Project events into the new version for up to ``PROJECT_SECONDS``, heartbeating its
        position; a failing event is retried, then parked (skip policy) or ends the rebuild."""
        rebuild = self._rebuild(job)
        labels = (job.read_model, str(job.version))
        _phase(job, "projecting")
        started, applied, attempts = time.monotonic(), 0, 0
        report: BatchReport | None = None
        while time.monotonic() - started < PROJECT_SECONDS:
            budget = PROJECT_SECONDS - (time.monotonic() - started)
            report = await rebuild.project(budget=max(budget, 1.0), heartbeat=_beat(labels))
            applied += report.applied
            REBUILD_APPLIED.labels(job.read_model).inc(report.applied)
            if report.failure is None or report.failure.event is None:
                if report.failure is not None:  # an unreadable event: retried by the workflow
                    raise ApplicationError(report.failure.error, type=REBUILD_FAILED)
                if report.caught_up:
                    break
                if report.paused:  # an operator paused the rebuild's checkpoint: wait
                    activity.heartbeat({"paused": True})
                    await asyncio.sleep(1.0)
                continue
            attempts += 1
            if attempts < ATTEMPTS_BEFORE_PARKING:
                await asyncio.sleep(0.5 * attempts)
                continue
            report = await rebuild.park(report.failure.event.event_id, attempts)
            attempts = 0
            if report.paused:
                raise ApplicationError(
                    f"version {job.version} of {job.read_model!r} stops at a failing event"
                    f" ({report.last_error}); the live version is untouched",
                    type=REBUILD_FAILED,
                    non_retryable=True,
                )
        elapsed = max(time.monotonic() - started, 1e-6)
        caught_up = report is not None and report.caught_up
        progress = await self._progress(
            rebuild, job.applied + applied, applied / elapsed, caught_up
        )
        _record(labels, progress)
        return progress

    @activity.defn(name="validate_rebuild")
    async def validate(self, job: RebuildInput) -> ValidationResult:
        """The new version against a fold of the event store up to its position."""
        rebuild = self._rebuild(job)
        _phase(job, "validating")
        try:
            async with heartbeating("validating: folding the event store"):
                comparisons = await to_the_end(rebuild.validate_fold())
        except FoldError as e:
            _phase(job, "failed")
            await rebuild.fail(str(e))
            raise ApplicationError(str(e), type=VALIDATION_FAILED, non_retryable=True) from e
        result = ValidationResult(checks=_checks("fold", comparisons))
        if not result.passed:
            _phase(job, "failed")
            await rebuild.fail(_differ(result))
        return result

    @activity.defn(name="switch_rebuild")
    async def switch(self, job: RebuildInput) -> SwitchResult:
        """Switch the live version to the new one (if it equals the live one at its position),
        then make every cached answer of the read model unreachable."""
        rebuild = self._rebuild(job)
        _phase(job, "switching")
        try:
            async with heartbeating("switching"):
                done = await to_the_end(rebuild.switch(grace=timedelta(seconds=job.grace_seconds)))
        except RebuildFailedError as e:
            raise ApplicationError(str(e), type=REBUILD_FAILED, non_retryable=True) from e
        validation = ValidationResult(checks=_checks("live", done.comparisons), note=done.note)
        if not done.switched and not validation.passed:
            _phase(job, "failed")
            await rebuild.fail(_differ(validation))
        if done.switched:
            _phase(job, "switched")
            REBUILD_SWITCHES.labels(job.read_model).inc()
            _forget((job.read_model, str(job.version)))
            if self._cache is not None:
                await self._cache.invalidate_read_model(job.read_model)
            log.info(
                "read model switched",
                extra={
                    "read_model": job.read_model,
                    "version": job.version,
                    "retired": done.retired,
                    "position": str(done.position),
                },
            )
        return SwitchResult(
            switched=done.switched,
            retired=done.retired,
            drop_after=done.drop_after,
            position=None if done.position is None else str(done.position),
            validation=validation,
        )

    @activity.defn(name="retire_read_model_version")
    async def retire(self, job: RebuildInput, version: int) -> bool:
        """Drop a retired version's tables (after the grace period)."""
        dropped = await retire(self._store, read_model(job.read_model), version)
        log.info(
            "read model version dropped" if dropped else "read model version already gone",
            extra={"read_model": job.read_model, "version": version},
        )
        return dropped

    @activity.defn(name="abandon_rebuild")
    async def abandon(self, job: RebuildInput) -> bool:
        """Drop the new version's tables if it never went live (a cancelled rebuild)."""
        dropped = await self._rebuild(job).abandon()
        _forget((job.read_model, str(job.version)))
        log.info(
            "rebuild abandoned",
            extra={"read_model": job.read_model, "version": job.version, "dropped": dropped},
        )
        return dropped

    async def _progress(
        self, rebuild: Rebuild, applied: int, rate: float, caught_up: bool
    ) -> RebuildProgress:
        position = await rebuild.position()
        head = (await rebuild.runner.lag(position)).head
        parked = len(await rebuild.parked())
        return RebuildProgress(
            position=str(position),
            head=str(head),
            applied=applied,
            remaining=max(0, head.global_position - position.global_position),
            events_per_second=round(rate, 1),
            caught_up=caught_up,
            parked=parked,
        )


def _phase(job: RebuildInput, phase: str) -> None:
    REBUILD_PHASE.labels(job.read_model, str(job.version)).state(phase)


def _forget(labels: tuple[str, str]) -> None:
    """Stop exporting a rebuild's gauges (it ended)."""
    for gauge in (REBUILD_POSITION, REBUILD_REMAINING, REBUILD_RATE):
        try:
            gauge.remove(*labels)
        except KeyError:
            pass  # never set in this process


def _beat(labels: tuple[str, str]) -> Callable[[], None]:
    def beat() -> None:
        activity.heartbeat({"read_model": labels[0], "version": labels[1]})

    return beat


def _record(labels: tuple[str, str], progress: RebuildProgress) -> None:
    REBUILD_POSITION.labels(*labels).set(Position.parse(progress.position).global_position)
    REBUILD_REMAINING.labels(*labels).set(progress.remaining)
    REBUILD_RATE.labels(*labels).set(progress.events_per_second)
    activity.heartbeat(progress.model_dump(mode="json"))


def _checks(
    against: Literal["live", "fold"], comparisons: list[TableComparison]
) -> list[TableCheck]:
    return [
        TableCheck(
            against=against,
            table=c.table,
            expected_rows=c.expected_rows,
            found_rows=c.found_rows,
            expected_checksum=c.expected_checksum,
            found_checksum=c.found_checksum,
            differences=[
                RowDifferenceModel(table=d.table, key=d.key, expected=d.expected, found=d.found)
                for d in c.differences
            ],
        )
        for c in comparisons
    ]


def _differ(result: ValidationResult) -> str:
    bad = [c for c in result.checks if not c.equal]
    return "; ".join(
        f"{c.table} differs from the {c.against}: {c.found_rows} rows (expected"
        f" {c.expected_rows}), {len(c.differences)} shown"
        for c in bad
    )


def rebuild_activities(activities: RebuildActivities) -> list[Callable[..., object]]:
    """The rebuild's activities, as a worker registers them."""
    return [
        activities.start,
        activities.project,
        activities.validate,
        activities.switch,
        activities.retire,
        activities.abandon,
    ]
