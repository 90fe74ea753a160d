"""Inputs and results of the read-model rebuild (``RebuildReadModelWorkflow``): plain JSON in the
Web UI, the ``status`` query and ``acci readmodels``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

REBUILD_WORKFLOW: Final = "RebuildReadModelWorkflow"

RebuildPhase = Literal[
    "starting", "projecting", "validating", "switching", "retiring", "done", "failed", "cancelled"
]


def rebuild_workflow_id(read_model: str, version: int) -> str:
    """One rebuild per read model and version: starting it again joins the running one."""
    return f"rebuild-{read_model}-v{version}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RebuildInput(_Model):
    """A rebuild of ``read_model`` into ``version``; a run that continues as new carries on
    ``started`` (the tables exist) and the totals."""

    read_model: str = Field(min_length=1, max_length=100)
    version: int = Field(ge=1, le=9_999)
    # Keep the old version's tables this long after the switch, then drop them.
    grace_seconds: float = Field(default=86_400.0, ge=0)
    started: bool = False
    applied: int = Field(default=0, ge=0)
    started_at: datetime | None = None


class RebuildProgress(_Model):
    """Where a rebuild's projection stands: its position, the head, how fast it goes."""

    position: str
    head: str
    applied: int
    remaining: int
    events_per_second: float
    caught_up: bool
    parked: int = 0

    @property
    def eta_seconds(self) -> float | None:
        if self.caught_up:
            return 0.0
        if self.events_per_second <= 0:
            return None
        return round(self.remaining / self.events_per_second, 1)


class RowDifferenceModel(_Model):
    """A row that differs: its table and key, what was expected (the live version or the fold)
    and what the new version has (None: no such row)."""

    table: str
    key: dict[str, Any]
    expected: dict[str, Any] | None
    found: dict[str, Any] | None


class TableCheck(_Model):
    """One table of the new version checked against ``against`` ('live' or 'fold')."""

    against: Literal["live", "fold"]
    table: str
    expected_rows: int
    found_rows: int
    expected_checksum: str
    found_checksum: str
    differences: list[RowDifferenceModel] = []

    @property
    def equal(self) -> bool:
        return (self.expected_rows, self.expected_checksum) == (
            self.found_rows,
            self.found_checksum,
        )


class ValidationResult(_Model):
    """A validation step: each table checked, and a note (e.g. why the live version was not
    compared)."""

    checks: list[TableCheck]
    note: str | None = None

    @property
    def passed(self) -> bool:
        return all(c.equal for c in self.checks)


class SwitchResult(_Model):
    """The switch: done or not yet (the live projection was behind the rebuild: try again),
    the version retired, when it is dropped, and the live comparison made under the lock."""

    switched: bool
    retired: int | None = None
    drop_after: datetime | None = None
    position: str | None = None
    validation: ValidationResult | None = None


class RebuildStatus(_Model):
    """A rebuild's ``status`` query (and its result): phase, progress, checks, the outcome."""

    read_model: str
    version: int
    phase: RebuildPhase
    progress: RebuildProgress | None = None
    eta_seconds: float | None = None
    validation: list[TableCheck] = []
    retired: int | None = None
    drop_after: datetime | None = None
    # The new version went live (a cancel after that leaves it live).
    switched: bool = False
    error: str | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None

    def summary(self) -> str:
        """One line, as the workflow's current details show it in the Web UI."""
        parts = [f"**{self.read_model} v{self.version}: {self.phase}**"]
        if self.progress is not None:
            p = self.progress
            parts.append(
                f"position {p.position} of {p.head}, {p.applied:,} events applied,"
                f" {p.events_per_second:,.0f} events/s"
            )
            if self.eta_seconds is not None and self.phase == "projecting":
                parts.append(f"ETA {self.eta_seconds:,.0f} s")
        if self.drop_after is not None and self.retired is not None:
            parts.append(f"version {self.retired} dropped after {self.drop_after.isoformat()}")
        if self.error:
            parts.append(self.error)
        return "  \n".join(parts)
