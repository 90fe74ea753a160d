"""Inputs and results of ACCI's workflows and activities: plain JSON in the Web UI and CLI."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final, Literal

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


PROJECTION_WORKFLOW: Final = "ProjectionWorkflow"

FailurePolicy = Literal["pause", "skip"]
ProjectionState = Literal["running", "paused", "failing"]


def projection_workflow_id(name: str) -> str:
    """The workflow id of a projection: one long-running workflow per projection."""
    return f"projection-{name}"


class ProjectionConfig(_Model):
    """How a projection runs: batch size, retries of a failing event, idle wait."""

    name: str
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # Attempts at a failing event, the first included (backoff doubling from
    # retry_initial_seconds up to retry_max_seconds between them); the last one parks it, and
    # on_failure decides whether the projection pauses there or goes on.
    max_attempts: int = Field(default=5, ge=2)
    retry_initial_seconds: float = Field(default=0.2, gt=0)
    retry_max_seconds: float = Field(default=10.0, gt=0)
    on_failure: FailurePolicy = "pause"
    # How long a caught-up projection's batch activity waits for new appends before it
    # returns to the workflow; while appends keep coming it returns every report_seconds (the
    # workflow records progress and answers status queries from what it returned).
    idle_seconds: float = Field(default=1.0, gt=0)
    report_seconds: float = Field(default=1.0, gt=0)
    # Woken by an append, a caught-up projection lets this pass before it applies: a burst of
    # commands then costs one batch instead of one each.
    gather_seconds: float = Field(default=0.1, ge=0)
    # The run continues as new once its history is this long (or Temporal suggests it).
    max_history_events: int = Field(default=2_000, ge=20)


class ProjectionFailure(_Model):
    """An event a projection failed to apply (event_id None: it could not even be read)."""

    event_id: uuid.UUID | None
    event_type: str | None = None
    tenant_id: str | None = None
    position: str | None = None
    error: str


class ProjectionBatchInput(_Model):
    """One batch: how many events at most, and the failing event to park if it fails again."""

    projection: str
    batch_size: int
    park_event_id: uuid.UUID | None = None
    attempts: int = 1
    on_failure: FailurePolicy = "pause"
    # Once caught up, wait up to wait_seconds for new appends, applying them as they come, and
    # return at the first caught-up point after report_seconds: a caught-up projection's idle
    # loop lives in its activity, not in workflow timers and signals.
    wait_seconds: float = Field(default=0.0, ge=0)
    report_seconds: float = Field(default=1.0, ge=0)
    gather_seconds: float = Field(default=0.0, ge=0)


class ProjectionBatchResult(_Model):
    """What a batch applied and where the projection stands: position, head and lag."""

    projection: str
    applied: int
    position: str
    head: str
    lag_events: int
    lag_seconds: float
    paused: bool
    caught_up: bool
    last_error: str | None = None
    failure: ProjectionFailure | None = None
    parked: ProjectionFailure | None = None


class ProjectionPauseInput(_Model):
    """Pause (or resume) a projection's checkpoint."""

    projection: str
    paused: bool


class DeadLetterInput(_Model):
    """A parked event of a projection, to retry or skip."""

    projection: str
    event_id: uuid.UUID


class DeadLetterAction(_Model):
    """What an operator asks of a parked event (the update's argument)."""

    event_id: uuid.UUID


class DeadLetterResult(_Model):
    """A parked event after an operator's retry or skip."""

    projection: str
    event_id: uuid.UUID
    resolution: Literal["retried", "skipped"]
    changes: int = 0


class ProjectionStatus(_Model):
    """A projection as its workflow sees it: position, head, lag, state and last error."""

    name: str
    state: ProjectionState
    position: str
    head: str
    lag_events: int
    lag_seconds: float
    applied_total: int = 0
    last_error: str | None = None
    failing_event_id: uuid.UUID | None = None
    attempts: int = 0
    updated_at: datetime | None = None


class ProjectionInput(_Model):
    """A projection workflow's start (and continue-as-new) input: its config and carried state."""

    config: ProjectionConfig
    paused: bool = False
    applied_total: int = 0
    failure: ProjectionFailure | None = None
    attempts: int = 0
    last: ProjectionBatchResult | None = None
