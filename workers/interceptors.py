"""The worker's activity interceptors: waking the projections after a command appended events,
observing commands and projection batches for the metrics, and binding each activity's log
context.

The worker's activity interceptor sees each command's result; one with events calls
``AppendNotifier.notify`` (``readmodels/wakeups.py``), which only bumps a counter here and leaves
the ``NOTIFY`` to other processes to a background task. Caught-up projection batches waiting
on that counter apply the new events at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from acci.activities.models import CommandInput, CommandResult, ProjectionBatchInput
from acci.readmodels.wakeups import AppendNotifier
from acci.workers.logs import bind_context
from acci.workers.metrics_commands import CommandMetrics, outcome_of
from acci.workers.metrics_projections import ProjectionActivity


class WakeProjectionsAfterAppend(Interceptor):
    """Worker interceptor: an activity that returns a command result with events (the command
    workflow's HandleCommand) wakes the projections."""

    def __init__(self, notifier: AppendNotifier) -> None:
        self._notifier = notifier

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _WakeAfterAppend(next, self._notifier)


class _WakeAfterAppend(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, notifier: AppendNotifier) -> None:
        super().__init__(next)
        self._notifier = notifier

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        if isinstance(result, CommandResult) and result.event_ids:
            self._notifier.notify()
        return result


class ObserveActivities(Interceptor):
    """Worker interceptor: counts each command attempt's outcome and time, and tracks which
    projection batches run and which raised (for ``acci_projection_state``)."""

    def __init__(self, commands: CommandMetrics, projections: ProjectionActivity) -> None:
        self._commands = commands
        self._projections = projections

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Observe(next, self._commands, self._projections)


class _Observe(ActivityInboundInterceptor):
    def __init__(
        self,
        next: ActivityInboundInterceptor,
        commands: CommandMetrics,
        projections: ProjectionActivity,
    ) -> None:
        super().__init__(next)
        self._commands = commands
        self._projections = projections

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        request = input.args[0] if input.args else None
        if isinstance(request, CommandInput):
            return await self._command(input, request)
        if isinstance(request, ProjectionBatchInput):
            return await self._batch(input, request.projection)
        return await super().execute_activity(input)

    async def _command(self, input: ExecuteActivityInput, command: CommandInput) -> Any:
        started = time.perf_counter()
        outcome = "infrastructure"
        try:
            result = await super().execute_activity(input)
            duplicate = isinstance(result, CommandResult) and result.duplicate
            outcome = "resent" if duplicate else "ok"
            return result
        except BaseException as e:
            outcome = outcome_of(e)
            raise
        finally:
            seconds = time.perf_counter() - started
            self._commands.attempt(command.command_type, command.tenant_id, outcome, seconds)

    async def _batch(self, input: ExecuteActivityInput, projection: str) -> Any:
        self._projections.started(projection)
        raised = False
        try:
            return await super().execute_activity(input)
        except asyncio.CancelledError:
            raise  # cancelled (a worker stopping): not a failing projection
        except BaseException:
            raised = True
            raise
        finally:
            self._projections.ended(projection, raised=raised)


class BindLogContext(Interceptor):
    """Worker interceptor: every line logged while an activity runs carries its workflow id,
    run id and activity type, and for a command its command id and type, tenant id, and
    correlation and causation ids (its payload too when ``payloads`` is true)."""

    def __init__(self, *, payloads: bool = False) -> None:
        self._payloads = payloads

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindLogContext(next, self._payloads)


class _BindLogContext(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, payloads: bool) -> None:
        super().__init__(next)
        self._payloads = payloads

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        fields: dict[str, object] = {
            "workflow_id": info.workflow_id,
            "run_id": info.workflow_run_id,
            "activity_type": info.activity_type,
        }
        command = next((a for a in input.args if isinstance(a, CommandInput)), None)
        if command is not None:
            command_id = str(command.command_id)
            # A command's events are correlated with and caused by the command itself
            # (activities/command_handler.py records the same ids on them).
            fields |= {
                "command_id": command_id,
                "command_type": command.command_type,
                "tenant_id": command.tenant_id,
                "correlation_id": command.metadata.get("correlation_id", command_id),
                "causation_id": command.metadata.get("causation_id", command_id),
            }
            if command.principal is not None:
                fields["principal"] = command.principal.describe()
            if self._payloads:
                fields["payload"] = command.payload
        # Not reset on return: the activity runs in a task of its own, so the binding ends with
        # it, and the SDK's own line about how the activity completed (written in that task
        # after this returns) carries it too.
        bind_context(**fields)
        return await super().execute_activity(input)
