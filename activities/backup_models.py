"""Inputs and results of the backup and restore workflows: plain JSON in the Web UI and CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from acci.domain.identifiers import TenantId

BACKUP_WORKFLOW: Final = "BackupWorkflow"
RESTORE_WORKFLOW: Final = "RestoreWorkflow"
BACKUP_FULL_SCHEDULE: Final = "acci-backup-full"
BACKUP_INCREMENTAL_SCHEDULE: Final = "acci-backup-incremental"

RestorePhase = Literal[
    "verifying", "restoring", "republishing", "verifying restored", "done", "failed"
]


def backup_schedule_id(base: str, tenant: str | None) -> str:
    """A backup Schedule's id: of every tenant, or of one."""
    return base if tenant is None else f"{base}-{tenant}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackupInput(_Model):
    """A backup of every tenant (``tenant`` None) or one; incremental unless ``full`` (an
    incremental one with no full backup before it in its scope is made full). ``schedule``:
    the Schedule that started it (its last success is a metric)."""

    tenant: TenantId | None = None
    full: bool = False
    schedule: str | None = None


class BackupResult(_Model):
    """A finished backup, as its manifest says."""

    backup_id: str
    kind: Literal["full", "incremental"]
    tenant: str | None
    parent: str | None
    checkpoint: str
    events: int
    bytes: int
    seconds: float
    deleted_by_retention: list[str] = []


class CheckResult(_Model):
    """One check: what it looked at and the first problems it found."""

    name: str
    looked_at: int
    problem_count: int
    problems: list[str] = []


class RestoreInput(_Model):
    """Restore ``backup_id`` (and the chain before it): one tenant, or everything into an empty
    store; up to a position ``TX:GP`` or a time, or the chain's end. ``republish``: publish the
    tenant's restored events to RabbitMQ again (consumers deduplicate by event id)."""

    backup_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")
    tenant: TenantId | None = None
    until_position: str | None = Field(default=None, pattern=r"^\d+:\d+$")
    until_time: datetime | None = None
    republish: bool = False


class RestoreResult(_Model):
    """What a restore did; ``phase`` is also what its ``status`` query shows."""

    phase: RestorePhase
    backup_id: str
    tenant: str | None
    chain: list[str] = []
    events: int = 0
    commands: int = 0
    snapshots: int = 0
    last_position: str | None = None
    read_model_events: dict[str, int] = {}
    republished: int = 0
    # The restored events checked in place (streams, decoding, sampled snapshots).
    checks: list[CheckResult] = []
    error: str | None = None


VERIFY_WORKFLOW: Final = "VerifyWorkflow"
VERIFY_SCHEDULE: Final = "acci-verify"


class VerifyInput(_Model):
    """A verification of the live store: every tenant, or one; ``sample`` snapshots checked."""

    tenant: TenantId | None = None
    sample: int = Field(default=100, ge=0, le=100_000)


class VerifyResult(_Model):
    """Every check of a verification; ``passed`` when none found a problem."""

    tenant: str | None
    checks: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(c.problem_count == 0 for c in self.checks)
