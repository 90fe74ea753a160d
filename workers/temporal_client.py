"""Sending commands through Temporal: one workflow run per command id."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from temporalio.client import (
    Client,
    Interceptor,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from acci.activities.command_activities import parse
from acci.activities.errors import command_error
from acci.activities.models import CommandInput, CommandResult, command_workflow_id
from acci.domain.errors import CommandError, CommandValidationError
from acci.eventstore.errors import CommandIdReusedError
from acci.workers.converter import data_converter
from acci.workers.settings import Settings
from acci.workflows.command import CommandWorkflow, command_search_attributes, command_summary


async def connect(
    settings: Settings,
    *,
    starting_within: float = 0.0,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """A client of the configured Temporal server, with ACCI's data converter
    (``workers.converter.data_converter``: JSON via pydantic, the payload codec if it is on).

    ``starting_within``: the server was just started, and may answer on its port a moment
    before its frontend is healthy; keep trying that long. ``runtime``: the SDK runtime to use
    (the worker's serves the SDK's metrics; default: the SDK's default runtime).
    ``interceptors``: the client's (and of workers built on it), e.g.
    ``workers.tracing.configure_tracing``'s.
    """
    converter = data_converter(settings)  # a codec without its key fails here, first
    deadline = time.monotonic() + starting_within
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=converter,
                runtime=runtime,
                interceptors=interceptors,
            )
        except RuntimeError:
            # The SDK reports an unreachable or not-yet-healthy server as a RuntimeError.
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


# How long a send waits for a run of its command id that is going with another command (or
# sender) to end before it is refused: a race's losing run ends within milliseconds.
OTHER_RUN_WAIT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command's workflow run, and whether this send joined a run already going."""

    handle: WorkflowHandle[CommandWorkflow, CommandResult]
    resent: bool


async def start_command(
    client: Client,
    command: CommandInput,
    *,
    task_queue: str,
    other_run_wait: float = OTHER_RUN_WAIT_S,
) -> SentCommand:
    """Start the command's run, or join the run of the same command that is still going.

    A run that has finished is not trusted for the answer: Temporal's memory can outlive the
    event store it ran against (a fresh database, a restored backup) or be gone (retention). A
    new run asks the store instead, which answers a re-send with the first result when the
    command's events are in it, runs the command when they are not, and refuses an id used for
    another command.

    A command id whose run is still going with another command, or with this one sent by
    another principal, is waited on (up to ``other_run_wait`` seconds) and the store asked once
    it has ended: of two senders racing with one id, the loser's run may still be going when
    the winner's re-send comes, and the store, not that run, knows which command the id is.
    Still going after the wait, it is refused (``CommandIdReusedError``), saying nothing of
    that command.
    """
    deadline = time.monotonic() + other_run_wait
    while True:
        running = await _start(client, command, task_queue=task_queue)
        if isinstance(running, SentCommand):
            return running
        if await _same_command(client, running, command):
            return SentCommand(running, True)
        if not await _ended_within(running, deadline - time.monotonic()):
            raise CommandIdReusedError(command.command_id)


async def _ended_within(
    handle: WorkflowHandle[CommandWorkflow, CommandResult], seconds: float
) -> bool:
    """Whether the run ends (whatever its outcome: its sender's answer) within ``seconds``."""
    if seconds <= 0:
        return False
    try:
        await asyncio.wait_for(handle.result(follow_runs=False), seconds)
    except TimeoutError:
        return False
    except WorkflowFailureError:
        pass
    return True


async def _start(
    client: Client, command: CommandInput, *, task_queue: str
) -> SentCommand | WorkflowHandle[CommandWorkflow, CommandResult]:
    """A new run of the command, or the handle of the run of its id that is still going."""
    workflow_id = command_workflow_id(command.command_id)
    aggregate_id = _aggregate_id(command)
    try:
        handle = await client.start_workflow(
            CommandWorkflow.run,
            command,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            # A running run is compared with this command before it is joined (below).
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            # Set at the start, the run needs no upsert of its own (two fewer history events).
            search_attributes=command_search_attributes(command, aggregate_id=aggregate_id),
            # Shown in the Web UI's list and on the run's page: "RegisterUser acme/u-42".
            static_summary=command_summary(command, aggregate_id=aggregate_id),
            # When this client's process also runs a worker (acci dev, an API beside a worker),
            # the server hands the first task straight back: no dispatch through matching.
            request_eager_start=True,
        )
    except WorkflowAlreadyStartedError as e:
        return client.get_workflow_handle_for(CommandWorkflow.run, workflow_id, run_id=e.run_id)
    except RPCError as e:
        if e.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        # The server refused the start itself: an input past its size limit, say.
        raise CommandValidationError(
            f"Temporal refused to start {command.command_type}: {e.message}"
        ) from None
    return SentCommand(handle, False)


def _aggregate_id(command: CommandInput) -> str | None:
    """The aggregate the command addresses, or None if it does not parse (its run fails)."""
    try:
        return parse(command).aggregate_id
    except CommandError:
        return None


async def _same_command(
    client: Client, handle: WorkflowHandle[CommandWorkflow, CommandResult], command: CommandInput
) -> bool:
    """Whether the run behind ``handle`` was started with this very command (its input), by
    the same principal."""
    async for event in handle.fetch_history_events():
        payloads = event.workflow_execution_started_event_attributes.input.payloads
        try:
            (earlier,) = await client.data_converter.decode(payloads, [CommandInput])
        except Exception:  # an input that does not even decode is not this command
            return False
        # Sent by someone else, it is not joined: joining would hand them the result of a
        # command they were never authorized for (a new run authorizes them first).
        same_sender = earlier.principal == command.principal
        return bool(same_sender and _fingerprint(earlier) == _fingerprint(command))
    return False


def _fingerprint(command: CommandInput) -> str | tuple[str, str, str]:
    """The command's identity as the store compares it, or its raw fields if it is invalid."""
    try:
        return parse(command).fingerprint(command.tenant_id)
    except CommandError:
        return (
            command.command_type,
            command.tenant_id,
            json.dumps(command.payload, sort_keys=True),
        )


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
