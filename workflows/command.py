"""The command workflow: authorize, validate, handle (load, decide, append), audit, publish.
Orchestration only: the command's input (its principal included) goes to one local activity."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final, TypeAlias

from temporalio import workflow
from temporalio.common import (
    RawValue,
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from acci.activities.command_activities import CommandActivities
    from acci.activities.errors import NON_RETRYABLE_TYPES, REJECTION_FAMILIES
    from acci.activities.models import COMMAND_WORKFLOW, CommandInput, CommandResult
    from acci.domain.errors import CommandValidationError
    from acci.workflows.inputs import NO_INPUT, decode_input
    from acci.workflows.steps import run_local

if TYPE_CHECKING:
    # Clients see (and type-check) the model they send: start_workflow(CommandWorkflow.run,
    # CommandInput(...)).
    CommandArgument: TypeAlias = CommandInput
else:
    # The SDK reads the argument's type from this annotation at run time and hands the worker
    # the payload undecoded, so that run() decodes it and malformed input fails the run at once
    # (see workflows/inputs.py) instead of failing its workflow task forever.
    CommandArgument = RawValue

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
# Retries due later than this wait on a workflow timer, not inside the workflow task: while
# RabbitMQ is down the task completes between attempts, so a worker told to stop is not held
# by a retry loop (the SDK's core keeps retrying a local activity during shutdown) and exits
# within its grace; the next attempt runs on whichever worker polls next.
_LOCAL_RETRY_THRESHOLD: Final = timedelta(seconds=1)
_KEYWORD_MAX: Final = 256
# A malformed input is a command validation error like any other: typed clients and acci map it
# to CommandValidationError ("error (validation): ...").
INPUT_ERROR_TYPE: Final = CommandValidationError.__name__
# Temporal keeps a summary short (the Web UI shows one line of it).
_SUMMARY_MAX: Final = 200


@workflow.defn(name=COMMAND_WORKFLOW)
class CommandWorkflow:
    """A command's run (id ``cmd-<command_id>``): validate, append once, publish at least once.

    The store, not Temporal, decides whether the command was handled before: a re-send starts a
    new run of the same id, which answers from the store (workers/temporal_client.py).
    """

    @workflow.run
    async def run(self, raw: CommandArgument = NO_INPUT) -> CommandResult:
        try:
            command = decode_input(
                raw, CommandInput, what="CommandWorkflow input", error_type=INPUT_ERROR_TYPE
            )
        except ApplicationError as e:
            # No activity runs, so the SDK logs nothing: the worker's log says it here (once:
            # the workflow logger is silent on replay), as it does a rejection by the activity.
            workflow.logger.warning(
                "command rejected", extra={"error_type": e.type, "error": e.message}
            )
            raise
        # start_command sets the search attributes at the start; a run started without them (a
        # plain `temporal workflow start`) upserts them itself, the aggregate once it is known.
        _set_missing(command_search_attributes(command))
        # The aggregate as the start named it (the client parsed the command), if it did.
        started_for = workflow.info().typed_search_attributes.get(AGGREGATE_ID)
        summary = command_summary(command, aggregate_id=started_for)
        # Authorize, validate, handle, audit and publish in one local activity, the principal in
        # the command's input (bench/commands_bench.py measured three separate activities at
        # about 1.4x the CPU per command for the same guarantees).
        try:
            result: CommandResult = await run_local(
                CommandActivities.run,
                command,
                step_timeout=_STEP_TIMEOUT,
                retry=_RETRY,
                local_retry_threshold=_LOCAL_RETRY_THRESHOLD,
            )
        except ApplicationError as e:
            # The Web UI shows a run's current details on its page: the outcome in words.
            workflow.set_current_details(f"{summary} rejected: {rejection_family(e.type)}")
            raise
        _set_missing(command_search_attributes(command, aggregate_id=result.aggregate_id))
        summary = command_summary(command, aggregate_id=result.aggregate_id)
        again = " (re-sent: the first result)" if result.duplicate else ""
        workflow.set_current_details(f"{summary} → v{result.stream_version}{again}")
        return result


def command_summary(command: CommandInput, *, aggregate_id: str | None = None) -> str:
    """What a command run is, in the words an operator scans a list with: its type, tenant and
    aggregate when known (``RegisterUser acme/u-42``; a tenant's own commands name the tenant
    once).

    ``start_command`` gives it as the run's summary (Temporal user metadata, on the run's page in
    the Web UI); the workflow ends its current details with the outcome.
    """
    target = command.tenant_id
    if aggregate_id and aggregate_id != command.tenant_id:
        target = f"{command.tenant_id}/{aggregate_id}"
    return f"{command.command_type} {target}"[:_SUMMARY_MAX]


def rejection_family(error_type: str | None) -> str:
    """A rejection's family in one word (``CommandValidationError`` → ``validation``)."""
    return REJECTION_FAMILIES.get(error_type or "", error_type or "failed")


def command_search_attributes(
    command: CommandInput, *, aggregate_id: str | None = None
) -> TypedSearchAttributes:
    """The search attributes of a command's run (``AggregateId`` only when it is known).

    ``start_command`` sets them when it starts the run, so that the run's history has no upsert
    events (two upserts cost the dev server 1.11x its CPU per command, bench/commands_bench.py).
    Runs started without them (a plain ``temporal workflow start``) get them from the workflow.
    """
    pairs = [
        SearchAttributePair(TENANT_ID, command.tenant_id[:_KEYWORD_MAX]),
        SearchAttributePair(COMMAND_TYPE, command.command_type[:_KEYWORD_MAX]),
    ]
    if aggregate_id is not None:
        pairs.append(SearchAttributePair(AGGREGATE_ID, aggregate_id[:_KEYWORD_MAX]))
    return TypedSearchAttributes(pairs)


def _set_missing(attributes: TypedSearchAttributes) -> None:
    """Upsert those of ``attributes`` that the run does not have yet (none: no upsert event).

    Deterministic on replay: the run's start attributes are in its history, and the SDK keeps
    workflow.info() up to date with each upsert.
    """
    present = workflow.info().typed_search_attributes
    missing = [
        pair.key.value_set(pair.value) for pair in attributes if present.get(pair.key) is None
    ]
    if missing:
        workflow.upsert_search_attributes(missing)
