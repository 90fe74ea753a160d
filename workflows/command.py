"""The command workflow: validate, handle (load, decide, append), publish. Orchestration only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.command_activities import CommandActivities
    from activities.errors import NON_RETRYABLE_TYPES
    from workflows.models import COMMAND_WORKFLOW, CommandInput, CommandResult

TENANT_ID: Final = SearchAttributeKey.for_keyword("TenantId")
AGGREGATE_ID: Final = SearchAttributeKey.for_keyword("AggregateId")
COMMAND_TYPE: Final = SearchAttributeKey.for_keyword("CommandType")
SEARCH_ATTRIBUTES: Final = (TENANT_ID, AGGREGATE_ID, COMMAND_TYPE)

# Infrastructure failures (database, RabbitMQ) are retried until they recover; the command then
# completes. Bad input, broken rules and exhausted conflicts fail at once.
_RETRY: Final = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE_TYPES),
)
# Local activities: they run in the workflow task, with no server round trip per step, and
# every step is idempotent, so a worker crash that loses their markers just re-runs them.
_STEP_TIMEOUT: Final = timedelta(seconds=30)
_KEYWORD_MAX: Final = 256

InputT = TypeVar("InputT")
ResultT = TypeVar("ResultT")


@workflow.defn(name=COMMAND_WORKFLOW)
class CommandWorkflow:
    """One run per command id: validate, append once, publish at least once."""

    @workflow.run
    async def run(self, command: CommandInput) -> CommandResult:
        workflow.upsert_search_attributes(
            [
                TENANT_ID.value_set(command.tenant_id[:_KEYWORD_MAX]),
                COMMAND_TYPE.value_set(command.command_type[:_KEYWORD_MAX]),
            ]
        )
        # Validate, handle and publish in one local activity (bench/commands_bench.py measured
        # three separate ones at about 1.4x the CPU per command for the same guarantees).
        result: CommandResult = await _step(CommandActivities.run, command)
        workflow.upsert_search_attributes([AGGREGATE_ID.value_set(result.aggregate_id)])
        return result


async def _step(activity: Callable[[Any, InputT], Awaitable[ResultT]], arg: InputT) -> ResultT:
    """Run one step; its typed failure becomes the workflow's failure, type and message kept."""
    try:
        return await workflow.execute_local_activity_method(
            activity, arg, start_to_close_timeout=_STEP_TIMEOUT, retry_policy=_RETRY
        )
    except ActivityError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError):
            raise ApplicationError(
                cause.message, *cause.details, type=cause.type, non_retryable=True
            ) from e
        raise
