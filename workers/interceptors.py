"""Waking the projections when a command has appended events, without slowing the command.

The worker's activity interceptor sees each command's result; one with events calls
``AppendNotifier.notify`` (``readmodels/wakeups.py``), which only bumps a counter here and leaves
the ``NOTIFY`` to other processes to a background task. Caught-up projection batches waiting
on that counter apply the new events at once.
"""

from __future__ import annotations

from typing import Any

from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from acci.activities.models import CommandResult
from acci.readmodels.wakeups import AppendNotifier


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
