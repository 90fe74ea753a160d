"""Inputs and results of ACCI's workflows and activities: plain JSON in the Web UI and CLI."""

from __future__ import annotations

import uuid
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

COMMAND_TASK_QUEUE: Final = "acci-commands"
COMMAND_WORKFLOW: Final = "CommandWorkflow"


def command_workflow_id(command_id: uuid.UUID | str) -> str:
    """The workflow id of a command: one run per command id."""
    return f"cmd-{command_id}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommandInput(_Model):
    """A command as sent by a client: who, which tenant, what, and the command's fields."""

    command_id: uuid.UUID
    tenant_id: str
    command_type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    # Free-form context carried into each event's metadata (actor, causation_id, trace ids).
    metadata: dict[str, str] = Field(default_factory=dict)


class ValidatedCommand(_Model):
    """What validation learned: the aggregate the command is addressed to."""

    aggregate_id: str
    aggregate_type: str


class CommandResult(_Model):
    """What a command stored: the stream's new version and each event's id and position."""

    command_id: uuid.UUID
    tenant_id: str
    aggregate_id: str
    aggregate_type: str
    stream_version: int
    event_ids: list[uuid.UUID]
    # Global positions, and the full (transaction:position) pairs for read-your-writes.
    global_positions: list[int]
    positions: list[str]
    # True when the command had been handled before (this is the first run's result).
    duplicate: bool = False

    @property
    def position(self) -> str | None:
        """The position of the command's last event, if it stored any."""
        return self.positions[-1] if self.positions else None


class PublishInput(_Model):
    """Which command's events to publish (read back from the event store, the truth)."""

    command_id: uuid.UUID
    tenant_id: str
    causation_id: str | None = None


class PublishResult(_Model):
    """How many events were published (confirmed by RabbitMQ)."""

    published: int
