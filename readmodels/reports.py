"""What a projection's batches report: how many events they applied, where the projection
stands after them, and the event that failed or was parked."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from acci.eventstore.records import Position, RecordedEvent
from acci.readmodels.errors import ChangeRefusedError
from acci.readmodels.lag import Lag


@dataclass(frozen=True, slots=True)
class EventFailure:
    """An event the projection could not apply, and why (event None: it could not be read)."""

    error: str
    event: RecordedEvent | None = None

    @property
    def event_id(self) -> uuid.UUID | None:
        return self.event.event_id if self.event else None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one or more batches did and where the projection stands after them."""

    projection: str
    applied: int
    position: Position
    lag: Lag
    paused: bool
    last_error: str | None
    # The event that failed this time (not parked: the caller retries it).
    failure: EventFailure | None = None
    # The event parked this time (its policy decided whether the position moved past it).
    parked: EventFailure | None = None

    @property
    def caught_up(self) -> bool:
        """Nothing readable is left to apply (and nothing is failing): events held back by an
        open event-writing transaction (a stall) are lag, but cannot be applied yet."""
        return self.lag.readable == 0 and self.failure is None and not self.paused


def describe(e: BaseException) -> str:
    """An error as a failure's text: its type and message (for changes the database refused,
    the database's own error's, as the dead letters and the status show it)."""
    if isinstance(e, ChangeRefusedError) and e.__cause__ is not None:
        e = e.__cause__
    # The first line: PostgreSQL's own errors go on with the statement and a caret under it.
    text = (str(e).strip() or "(no message)").splitlines()[0]
    return f"{type(e).__name__}: {text}"
