"""Running a local activity from a workflow, its typed failure kept as the workflow's own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT")


async def run_local(
    activity: Callable[[Any, InputT], Awaitable[ResultT]],
    arg: InputT,
    *,
    step_timeout: timedelta,
    retry: RetryPolicy,
    other_failures: str | None = None,
    local_retry_threshold: timedelta | None = None,
) -> ResultT:
    """Run a local activity method; an ApplicationError it ends with is raised again, with its
    type and message, so the Web UI and CLIs show why. Other failures propagate as they are, or
    become a non-retryable ApplicationError of type ``other_failures`` when that is given.
    Retries due after more than ``local_retry_threshold`` wait on a workflow timer."""
    try:
        return await workflow.execute_local_activity_method(
            activity,
            arg,
            start_to_close_timeout=step_timeout,
            retry_policy=retry,
            local_retry_threshold=local_retry_threshold,
        )
    except ActivityError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError):
            raise ApplicationError(
                cause.message, *cause.details, type=cause.type, non_retryable=True
            ) from e
        if other_failures is None:
            raise
        raise ApplicationError(str(cause or e), type=other_failures, non_retryable=True) from e
