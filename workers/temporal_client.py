"""Sending commands through Temporal: one workflow run per command id."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.errors import command_error
from domain.errors import CommandError
from workers.settings import Settings
from workflows.command import CommandWorkflow
from workflows.models import CommandInput, CommandResult, command_workflow_id


async def connect(settings: Settings) -> Client:
    """A client of the configured Temporal server, speaking JSON via pydantic."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command's workflow run, and whether it had finished before this send."""

    handle: WorkflowHandle[CommandWorkflow, CommandResult]
    resent: bool


async def start_command(client: Client, command: CommandInput, *, task_queue: str) -> SentCommand:
    """Start the command's run, or attach to the one that exists (running or finished)."""
    workflow_id = command_workflow_id(command.command_id)
    try:
        handle = await client.start_workflow(
            CommandWorkflow.run,
            command,
            id=workflow_id,
            task_queue=task_queue,
            # A re-sent command never runs twice: a closed run rejects the id, a running one is
            # joined. The event store's idempotent append backs this up beyond Temporal's
            # retention.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # When this client's process also runs a worker (acci dev, an API beside a worker),
            # the server hands the first task straight back: no dispatch through matching.
            request_eager_start=True,
        )
    except WorkflowAlreadyStartedError:
        return SentCommand(client.get_workflow_handle_for(CommandWorkflow.run, workflow_id), True)
    return SentCommand(handle, False)


async def command_result(handle: WorkflowHandle[CommandWorkflow, CommandResult]) -> CommandResult:
    """The command's result, or its typed ``CommandError``."""
    try:
        return await handle.result()
    except WorkflowFailureError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError):
            raise command_error(cause) from e
        raise CommandError(f"command workflow {handle.id} failed: {cause}") from e


async def execute_command(
    client: Client, command: CommandInput, *, task_queue: str
) -> CommandResult:
    """Send a command and wait for its result (the first run's, if it was sent before)."""
    sent = await start_command(client, command, task_queue=task_queue)
    return await command_result(sent.handle)


async def is_running(client: Client, workflow_id: str) -> bool:
    """Whether a workflow run with this id is still going."""
    description = await client.get_workflow_handle(workflow_id).describe()
    return description.status == WorkflowExecutionStatus.RUNNING
