"""Sending commands in workflow tests."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client

from acci.activities.models import CommandInput, CommandResult
from acci.domain.principals import SYSTEM_ADMIN, Principal
from acci.workers.temporal_client import execute_command

OPERATOR = Principal(id="tests", roles=frozenset({SYSTEM_ADMIN}))
"""Who the tests send commands as unless they say otherwise: a system administrator."""

OPERATOR_JSON = {"id": "tests", "roles": [SYSTEM_ADMIN]}
"""``OPERATOR`` as JSON, for commands written by hand (the Temporal CLI's ``--input``)."""


def command(
    tenant: str,
    command_type: str,
    command_id: uuid.UUID | None = None,
    *,
    principal: Principal | None = OPERATOR,
    **payload: Any,
) -> CommandInput:
    """A command input as a client would send it (as ``principal``)."""
    return CommandInput(
        command_id=command_id or uuid.uuid4(),
        tenant_id=tenant,
        command_type=command_type,
        payload=payload,
        principal=principal,
    )


async def send(
    client: Client, task_queue: str, tenant: str, command_type: str, **payload: Any
) -> CommandResult:
    """Send a command and wait for its result."""
    return await execute_command(
        client, command(tenant, command_type, **payload), task_queue=task_queue
    )
