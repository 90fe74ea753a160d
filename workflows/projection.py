"""The projection workflow: one long-running run per projection. Orchestration only.

It loops: apply the events after the checkpoint (an activity: each batch's changes and checkpoint
in one transaction; once caught up it waits there, up to the idle time, for new appends and
applies them as they come) → record position, head and lag → continue-as-new before the history
grows large. Waiting in the activity, woken in-process (or by PostgreSQL NOTIFY) when a command
appends, keeps wake-ups off Temporal entirely: no signal, no workflow task, no history event per
append, so the command path does not pay for them.

A failing event is retried with backoff, then parked by the batch that tries it last; the
projection's policy pauses it there or moves past it. The checkpoint row, not this workflow, is
what a new run resumes from, so a run can be replaced at any time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from acci.activities.errors import NON_RETRYABLE_TYPES, PROJECTION_INPUT_ERROR
    from acci.activities.models import (
        PROJECTION_WORKFLOW,
        DeadLetterAction,
        DeadLetterInput,
        DeadLetterResult,
        ProjectionBatchInput,
        ProjectionBatchResult,
        ProjectionConfig,
        ProjectionFailure,
        ProjectionInput,
        ProjectionPauseInput,
        ProjectionStatus,
    )
    from acci.activities.projection_activities import ProjectionActivities
    from acci.workflows.inputs import NO_INPUT, decode_input
    from acci.workflows.steps import run_local

if TYPE_CHECKING:
    ProjectionArgument: TypeAlias = ProjectionInput
else:
    # Handed over undecoded, like CommandWorkflow's input: a start with a malformed input fails
    # the run at once instead of its workflow task forever (workflows/inputs.py).
    ProjectionArgument = RawValue

# The failure type of a start whose input does not decode.
INPUT_ERROR_TYPE: Final = PROJECTION_INPUT_ERROR

# The batch activity is retried here a few times for a database blip or a lost worker; a longer
# outage comes back to the loop as a failure, shown by the status query, and is retried there
# with the same backoff as a failing event. The workflow itself never fails.
_BATCH_RETRY: Final = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=3,
    non_retryable_error_types=list(NON_RETRYABLE_TYPES),
)
# Operator actions (pause, resume, dead letters) retry outages until they get through.
_ACTION_RETRY: Final = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=10,
    non_retryable_error_types=list(NON_RETRYABLE_TYPES),
)
# The batch is a regular activity: it long-polls for appends, and a local activity that long
# would hold the workflow task open (queries and updates would wait for it). It heartbeats
# after every batch and every few seconds while it waits, so a killed worker's batch is retried
# (by a restarted worker, or another one) within the heartbeat timeout; the checkpoint makes a
# re-run (or a zombie racing it) apply nothing twice, so a slow batch timing out costs only
# wasted work.
_BATCH_BUDGET: Final = timedelta(seconds=120)
_HEARTBEAT_TIMEOUT: Final = timedelta(seconds=12)
# Operator actions are short: local activities, no server round trip.
_ACTION_TIMEOUT: Final = timedelta(seconds=30)

InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT")


@workflow.defn(name=PROJECTION_WORKFLOW)
class ProjectionWorkflow:
    """Keeps one projection's read model up to date, for as long as the worker runs."""

    @workflow.init
    def __init__(self, raw: ProjectionArgument = NO_INPUT) -> None:
        start = decode_input(
            raw, ProjectionInput, what="ProjectionWorkflow input", error_type=INPUT_ERROR_TYPE
        )
        self._config: ProjectionConfig = start.config
        self._paused = start.paused
        self._applied_total = start.applied_total
        self._failure: ProjectionFailure | None = start.failure
        self._attempts = start.attempts
        self._last: ProjectionBatchResult | None = start.last
        self._outage: str | None = None
        self._outages = 0
        self._updated_at: datetime | None = None
        # Events applied per second between the last two batch results.
        self._rate = 0.0
        # Set by a resume or a new config: ends a backoff at once.
        self._retry_now = False

    @workflow.run
    async def run(self, raw: ProjectionArgument = NO_INPUT) -> None:
        while True:
            if self._paused:
                await workflow.wait_condition(lambda: not self._paused)
            else:
                await self._run_batch()
            info = workflow.info()
            if (
                info.is_continue_as_new_suggested()
                or info.get_current_history_length() > self._config.max_history_events
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carried_over())

    async def _run_batch(self) -> None:
        config = self._config
        self._retry_now = False
        attempt = self._attempts + 1 if self._failure is not None else 1
        last_try = self._failure is not None and attempt >= config.max_attempts
        request = ProjectionBatchInput(
            projection=config.name,
            batch_size=config.batch_size,
            park_event_id=self._failure.event_id if last_try and self._failure else None,
            attempts=attempt,
            on_failure=config.on_failure,
            wait_seconds=config.idle_seconds,
            report_seconds=config.report_seconds,
            poll_seconds=config.poll_seconds,
            gather_seconds=config.gather_seconds,
        )
        try:
            result: ProjectionBatchResult = await workflow.execute_activity_method(
                ProjectionActivities.run_batch,
                request,
                start_to_close_timeout=_BATCH_BUDGET + timedelta(seconds=config.idle_seconds),
                heartbeat_timeout=_HEARTBEAT_TIMEOUT,
                retry_policy=_BATCH_RETRY,
            )
        except ActivityError as e:
            self._outage = str(e.cause or e)
            self._outages += 1
            workflow.logger.warning("projection batch failed: %s", self._outage)
            self._show()
            await self._back_off(self._outages)
            return
        self._outage, self._outages = None, 0
        self._record(result)
        if result.paused or result.parked is not None:
            self._failure, self._attempts = None, 0
            return
        if result.failure is not None:
            same = self._failure is not None and self._failure.event_id == result.failure.event_id
            self._attempts = self._attempts + 1 if same else 1
            self._failure = result.failure
            self._show()
            await self._back_off(self._attempts)
            return
        self._failure, self._attempts = None, 0

    async def _back_off(self, attempts: int) -> None:
        config = self._config
        delay = min(config.retry_initial_seconds * 2 ** (attempts - 1), config.retry_max_seconds)
        # A pause, a resume or a new config cuts a backoff short.
        try:
            await workflow.wait_condition(
                lambda: self._retry_now or self._paused, timeout=timedelta(seconds=delay)
            )
        except TimeoutError:
            pass

    def _record(self, result: ProjectionBatchResult) -> None:
        now = workflow.now()
        since = (now - self._updated_at).total_seconds() if self._updated_at else 0.0
        self._rate = result.applied / since if since > 0 else 0.0
        self._last = result
        self._applied_total += result.applied
        self._updated_at = now
        if result.paused:
            # Only the checkpoint row pauses a projection for good; resuming is an update.
            self._paused = True
        self._show()

    def _show(self) -> None:
        # The run's current details (Temporal user metadata): the Web UI shows them on the
        # run's page, so an operator sees where the projection stands without a query.
        workflow.set_current_details(current_details(self.status(), self._rate))

    def _carried_over(self) -> ProjectionInput:
        return ProjectionInput(
            config=self._config,
            paused=self._paused,
            applied_total=self._applied_total,
            failure=self._failure,
            attempts=self._attempts,
            last=self._last,
        )

    # -- messages -------------------------------------------------------------------------

    @workflow.signal
    def configure(self, config: ProjectionConfig) -> None:
        """Take a new config (sent by each worker at boot, with the start)."""
        if config.name != self._config.name:
            workflow.logger.warning(
                "ignoring the config of projection %s sent to %s", config.name, self._config.name
            )
            return
        self._config = config
        self._retry_now = True

    @workflow.query
    def status(self) -> ProjectionStatus:
        """Position, head, lag, stall, state (running, paused or failing) and the last error,
        as of the last batch (``acci projections status`` measures head and lag afresh)."""
        last, failure = self._last, self._failure
        if self._paused:
            state = "paused"
        elif failure is not None or self._outage is not None:
            state = "failing"
        else:
            state = "running"
        last_error = self._outage or (failure.error if failure else None)
        if last_error is None and last is not None:
            last_error = last.last_error
        return ProjectionStatus(
            **(last.standing() if last else {}),
            name=self._config.name,
            state=state,
            applied_total=self._applied_total,
            last_error=last_error,
            failing_event_id=failure.event_id if failure else None,
            attempts=self._attempts,
            updated_at=self._updated_at,
        )

    @workflow.update
    async def pause(self) -> ProjectionStatus:
        """Stop applying events (the checkpoint row says paused, so a new run stays paused)."""
        result = await _action(
            ProjectionActivities.set_paused,
            ProjectionPauseInput(projection=self._config.name, paused=True),
        )
        self._record(result)
        self._paused = True
        self._show()
        return self.status()

    @workflow.update
    async def resume(self) -> ProjectionStatus:
        """Apply events again; a failing event gets a fresh set of attempts."""
        result = await _action(
            ProjectionActivities.set_paused,
            ProjectionPauseInput(projection=self._config.name, paused=False),
        )
        self._record(result)
        self._paused = False
        self._failure, self._attempts = None, 0
        self._retry_now = True
        self._show()
        return self.status()

    @workflow.update
    async def retry_dead_letter(self, action: DeadLetterAction) -> DeadLetterResult:
        """Apply a parked event once more, exactly once, and mark it retried."""
        result: DeadLetterResult = await _action(
            ProjectionActivities.retry_dead_letter,
            DeadLetterInput(projection=self._config.name, event_id=action.event_id),
        )
        return result

    @workflow.update
    async def skip_dead_letter(self, action: DeadLetterAction) -> DeadLetterResult:
        """Mark a parked event skipped (a projection paused at it moves past it)."""
        result: DeadLetterResult = await _action(
            ProjectionActivities.skip_dead_letter,
            DeadLetterInput(projection=self._config.name, event_id=action.event_id),
        )
        return result


def current_details(status: ProjectionStatus, rate: float) -> str:
    """A projection's standing in one line of Markdown, as its run shows it in the Web UI."""
    line = (
        f"**{status.state}** · position {status.position} · head {status.head}"
        f" · lag {status.lag_events} events ({status.lag_seconds:.1f} s)"
        f" · {rate:.0f} events/s · {status.applied_total} applied"
    )
    if status.stalled:
        line += f" · held back {status.stall_seconds:.0f} s by an open transaction"
    if status.last_error:
        line += f"\n\nlast error: {status.last_error[:300]}"
    if status.updated_at is not None:
        line += f"\n\nas of {status.updated_at:%Y-%m-%d %H:%M:%S} UTC"
    return line


async def _action(activity: Callable[[Any, InputT], Awaitable[ResultT]], arg: InputT) -> ResultT:
    """Run an operator's step; its typed failure fails the update, type and message kept."""
    return await run_local(
        activity,
        arg,
        step_timeout=_ACTION_TIMEOUT,
        retry=_ACTION_RETRY,
        other_failures="ProjectionError",
    )
