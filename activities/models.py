"""Inputs and results of ACCI's workflows and activities: plain JSON in the Web UI and CLI."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from acci.domain.json_values import json_problem
from acci.domain.metadata import reserved_keys
from acci.domain.principals import Principal
from acci.readmodels.failure_policy import FailurePolicy

COMMAND_WORKFLOW: Final = "CommandWorkflow"

# How deeply a command's payload may nest (the payload object itself is level 1). Commands are
# shallow; the bound keeps a hostile input from costing recursion anywhere downstream.
MAX_PAYLOAD_DEPTH: Final = 32


def command_workflow_id(command_id: uuid.UUID | str) -> str:
    """The workflow id of a command (a re-send may make several runs of it; the store keeps the
    command once)."""
    return f"cmd-{command_id}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _text(value: str) -> str:
    problem = json_problem(value, max_depth=1, allow_nul=False)
    if problem:
        raise ValueError(f"the value {problem}")
    return value


def _payload(value: dict[str, Any]) -> dict[str, Any]:
    problem = json_problem(value, max_depth=MAX_PAYLOAD_DEPTH, allow_nul=False)
    if problem:
        raise ValueError(f"payload {problem}")
    return value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    problem = json_problem(value, max_depth=1, allow_nul=False)
    if problem:
        raise ValueError(f"metadata {problem}")
    forged = reserved_keys(value)
    if forged:
        raise ValueError(
            f"metadata key(s) {', '.join(map(repr, forged))} name fields the system records"
            " itself; a client may not set them"
        )
    return value


# Valid Unicode text: a lone surrogate cannot be encoded as UTF-8, and PostgreSQL stores no NUL
# in text or JSON (so neither could be stored: refused here, where the field is named).
UnicodeText = Annotated[str, AfterValidator(_text)]


class CommandInput(_Model):
    """A command as sent by a client: who, which tenant, what, and the command's fields.

    ``principal`` is who sends it (a user of a tenant with roles, a system administrator, or a
    service): the worker authorizes the command against it before anything is loaded
    (domain/authorization.py) and records it in each event's metadata as ``actor``. It is
    optional here only so that a command without one is decoded and then refused as an
    ``AuthorizationError`` (and audited), not run as anyone.

    Refused at decoding: a payload nested more than MAX_PAYLOAD_DEPTH levels, text that is not
    valid Unicode or holds a NUL, metadata values other than strings, and metadata keys that
    name a field the system records itself (domain.metadata.RESERVED_METADATA_KEYS).
    """

    command_id: uuid.UUID
    tenant_id: UnicodeText
    command_type: UnicodeText
    payload: Annotated[dict[str, Any], AfterValidator(_payload)] = Field(default_factory=dict)
    # Free-form context carried into each event's metadata (a client's own request or trace
    # ids): strings only, never the envelope fields the system records.
    metadata: Annotated[dict[str, str], AfterValidator(_metadata)] = Field(default_factory=dict)
    principal: Principal | None = None


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
    # The position of the command's last event (None if it stored none): a field, so that the
    # result JSON in the Temporal CLI and Web UI carries it too. Derived from positions.
    position: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_position(cls, data: Any) -> Any:
        # Results recorded before the field existed decode too: it is always derived, never sent
        # on its own.
        if isinstance(data, dict):
            positions = data.get("positions") or []
            derived = positions[-1] if isinstance(positions, list) and positions else None
            data = {**data, "position": derived}
        return data


PROJECTION_WORKFLOW: Final = "ProjectionWorkflow"

# "stopped": no workflow answers for it (not started, terminated, or a projection retired).
ProjectionState = Literal["running", "paused", "failing", "stopped"]


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
    # While it waits, the batch reads the store this often anyway, for appends that woke no one.
    poll_seconds: float = Field(default=1.0, ge=0)
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
    # While waiting, look at the store this often for appends no wake-up announced (0: never).
    poll_seconds: float = Field(default=0.0, ge=0)


class ProjectionStanding(_Model):
    """Where a projection stands: its position, the newest committed event (head), the lag
    between them, and what holds it back. A batch's result and the workflow's status both
    carry these fields, under these names; the defaults: no batch has run yet."""

    position: str = "0:0"
    head: str = "0:0"
    lag_events: int = 0
    lag_seconds: float = 0.0
    # Committed events wait behind an open event-writing transaction (readmodels/lag.py):
    # how long it has been open, and its backend's pid if known.
    stalled: bool = False
    stall_seconds: float = 0.0
    stall_pid: int | None = None

    def standing(self) -> dict[str, Any]:
        """These fields alone, to give another model the same standing."""
        return {name: getattr(self, name) for name in ProjectionStanding.model_fields}


class ProjectionBatchResult(ProjectionStanding):
    """What a batch applied and where the projection stands: position, head and lag."""

    projection: str
    applied: int
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


class ProjectionStatus(ProjectionStanding):
    """A projection as its workflow sees it: where its last batch left it (position, head,
    lag), its state and its last error."""

    name: str
    state: ProjectionState
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


# --- the snapshot job ----------------------------------------------------------------------------

SNAPSHOT_WORKFLOW: Final = "SnapshotWorkflow"
SNAPSHOT_SCHEDULE_ID: Final = "acci-snapshots"


class SnapshotJobInput(_Model):
    """A snapshot job: where it is in the scan of every stream, and what it did so far (a run
    that continues as new carries them on)."""

    # (tenant id, aggregate id, aggregate type) of the last stream looked at; None: the start.
    after: tuple[str, str, str] | None = None
    streams_per_batch: int = Field(default=1_000, ge=1, le=100_000)
    # When the job's first run started (set by the workflow; its duration is measured from it).
    started_at: datetime | None = None
    scanned: int = 0
    written: int = 0
    pruned: int = 0


class SnapshotBatchResult(_Model):
    """One batch of the scan: streams looked at, snapshots written and pruned, where it ended
    (None: it was the last)."""

    next_after: tuple[str, str, str] | None
    scanned: int
    written: int
    pruned: int


class SnapshotJobStatus(_Model):
    """Where a snapshot job stands (its ``status`` query, and its result when done)."""

    phase: Literal["scanning", "done"]
    after: tuple[str, str, str] | None
    scanned: int
    written: int
    pruned: int

    def summary(self) -> str:
        """One line of Markdown for the run's current details in the Web UI."""
        where = f" · after {'/'.join(self.after)}" if self.after and self.phase != "done" else ""
        return (
            f"**{self.phase}** · {self.scanned} streams scanned · {self.written} snapshots"
            f" written · {self.pruned} pruned{where}"
        )


# --- event migration -----------------------------------------------------------------------------

EVENT_MIGRATION_WORKFLOW: Final = "EventMigrationWorkflow"

EventCursor = tuple[str, int, int]
"""(tenant id, transaction id, global position) of the last stored event a migration looked at."""


def event_migration_workflow_id(tenant_id: str | None, event_types: tuple[str, ...]) -> str:
    """The workflow id ``acci migrate-events`` uses for a scope: a second start of the same scope
    while one runs joins it."""
    types = ",".join(sorted(event_types)) or "*"
    return f"event-migration:{tenant_id or '*'}:{types}"


class EventMigrationInput(_Model):
    """An event migration: its scope (one tenant and some types, or all), its batch size, and
    where it got to and what it did (a run that continues as new carries them on)."""

    tenant_id: str | None = None
    event_types: tuple[str, ...] = ()
    events_per_batch: int = Field(default=1_000, ge=1, le=100_000)
    # Set by the workflow's first run (the record's key and start time), then carried on.
    migration_id: str | None = None
    started_at: datetime | None = None
    after: EventCursor | None = None
    scanned: int = 0
    migrated: int = 0
    batches: int = 0


class EventMigrationFailure(_Model):
    """A stored event whose upcast data its model refused (its batch wrote nothing)."""

    event_id: uuid.UUID
    tenant_id: str
    event_type: str
    event_version: int
    error: str


class EventMigrationBatchResult(_Model):
    """One batch: rows looked at, events rewritten, where it ended (None: the last), or the
    event that stopped it."""

    next_after: EventCursor | None
    scanned: int
    migrated: int
    failure: EventMigrationFailure | None = None


class EventMigrationStatus(_Model):
    """Where an event migration stands (its ``status`` query, and its result when done)."""

    phase: Literal["migrating", "done", "failed"]
    migration_id: str | None
    after: EventCursor | None
    scanned: int
    migrated: int
    batches: int
    failure: EventMigrationFailure | None = None

    def summary(self) -> str:
        """One line of Markdown for the run's current details in the Web UI."""
        line = (
            f"**{self.phase}** · {self.scanned} events scanned · {self.migrated} migrated"
            f" in {self.batches} batches"
        )
        if self.failure is not None:
            line += f" · stopped at {self.failure.event_type}: {self.failure.error[:200]}"
        return line
