"""Sending commands in workflow tests."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client

from acci.activities.models import CommandInput, CommandResult
from acci.workers.temporal_client import execute_command


def command(
    tenant: str, command_type: str, command_id: uuid.UUID | None = None, **payload: Any
) -> CommandInput:
    """A command input as a client would send it."""
    return CommandInput(
        command_id=command_id or uuid.uuid4(),
        tenant_id=tenant,
        command_type=command_type,
        payload=payload,
    )


async def send(
    client: Client, task_queue: str, tenant: str, command_type: str, **payload: Any
) -> CommandResult:
    """Send a command and wait for its result."""
    return await execute_command(
        client, command(tenant, command_type, **payload), task_queue=task_queue
    )
