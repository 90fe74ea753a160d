"""Resolving a projection's parked events: an operator's retry or skip, each in one transaction
with the dead letter's row and the checkpoint."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from psycopg import AsyncConnection

from acci.eventstore.errors import TenantKeyShreddedError
from acci.eventstore.records import Position, RecordedEvent
from acci.readmodels.batch import Batches
from acci.readmodels.changes import Change, apply_changes
from acci.readmodels.checkpoints import Checkpoint
from acci.readmodels.db import applying_changes, translated
from acci.readmodels.dead_letters import DeadLetter, DeadLetterStore, Resolution
from acci.readmodels.errors import NotFoundError, ProjectionError, ReadModelUnavailableError
from acci.readmodels.reports import describe
from acci.readmodels.versioned import allowed, versioned_tables

log = logging.getLogger(__name__)


class DeadLetterResolution:
    """Retries or skips one projection's parked events."""

    def __init__(self, batches: Batches, dead_letters: DeadLetterStore) -> None:
        self._batches = batches
        self._dead_letters = dead_letters
        self._name = batches.name

    async def retry(self, event_id: uuid.UUID) -> int:
        """Apply a parked event once more and close its row, in one transaction.

        Returns how many row changes it applied. A projection paused at the event moves past it
        (and stays paused until resumed). Fails with ``ProjectionError`` if the event fails
        again (its row stays open, its attempts counted), ``NotFoundError`` if it was never
        parked.
        """
        try:
            return await self._resolve(event_id, "retried")
        except _RetryFailedError as e:
            await self._dead_letters.failed_again(self._name, event_id, str(e))
            raise

    async def skip(self, event_id: uuid.UUID) -> None:
        """Close a parked event's row without applying it; a projection paused at the event
        moves past it (and stays paused until resumed)."""
        await self._resolve(event_id, "skipped")

    async def _resolve(self, event_id: uuid.UUID, resolution: Resolution) -> int:
        batches = self._batches
        with translated():
            async with batches.store.pool.connection() as conn, conn.transaction():
                letter = await self._open_letter(conn, event_id)
                checkpoint = await batches.checkpoints.lock(conn, self._name)
                event = await self._parked_event(letter.tenant_id, letter.position, event_id)
                if checkpoint.position < event.position:
                    await self._pass_over_to(conn, checkpoint, event)
                if resolution == "retried":
                    changes = await self._apply(conn, event, checkpoint.version)
                else:
                    changes = []
                await self._dead_letters.resolve(conn, self._name, event_id, resolution)
        await batches.notify([(event, changes)])
        log.info(
            "dead letter resolved",
            extra={"projection": self._name, "event_id": str(event_id), "resolution": resolution},
        )
        return len(changes)

    async def _open_letter(self, conn: AsyncConnection[Any], event_id: uuid.UUID) -> DeadLetter:
        """The parked event's row, locked; it must be open."""
        letter = await self._dead_letters.lock(conn, self._name, event_id)
        if letter is None:
            raise _NotParkedError(f"event {event_id} is not parked for projection {self._name}")
        if not letter.open:
            raise _AlreadyResolvedError(
                f"parked event {event_id} of projection {self._name} was already"
                f" {letter.resolution} at {letter.resolved_at}"
            )
        return letter

    async def _pass_over_to(
        self, conn: AsyncConnection[Any], checkpoint: Checkpoint, event: RecordedEvent
    ) -> None:
        """Move a projection paused at ``event`` to it: only the next event may be passed,
        never a gap."""
        following = await self._batches.store.read_all(checkpoint.position, limit=1)
        if [e.event_id for e in following] != [event.event_id]:
            raise ProjectionError(
                f"projection {self._name} is at {checkpoint.position}, before other"
                f" events; it has not reached parked event {event.event_id} yet"
            )
        await self._batches.checkpoints.move(conn, self._name, event.position)

    async def _apply(
        self, conn: AsyncConnection[Any], event: RecordedEvent, version: int
    ) -> list[Change]:
        """Apply ``event``'s changes once more, to version ``version``'s tables (inside the
        caller's transaction)."""
        try:
            with applying_changes():
                if not event.readable:  # a shredded tenant's: no handler may read it
                    raise TenantKeyShreddedError(event.tenant_id)
                projection = self._batches.projection
                tables = versioned_tables(projection, version)
                changes = allowed(projection.handle_event(event), tables)
                await apply_changes(conn, changes, tables)
        except ReadModelUnavailableError:
            raise
        except Exception as e:
            raise _RetryFailedError(
                f"parked event {event.event_id} failed again in projection {self._name}:"
                f" {describe(e)}"
            ) from e
        return changes

    async def _parked_event(
        self, tenant_id: str, position: Position, event_id: uuid.UUID
    ) -> RecordedEvent:
        # The event is the only one at its position: read from just before it, upcast.
        before = Position(position.transaction_id, position.global_position - 1)
        found = await self._batches.store.read_all(before, limit=1, tenant_id=tenant_id)
        if not found or found[0].event_id != event_id:
            raise ProjectionError(f"parked event {event_id} is not in the event store")
        return found[0]


class _NotParkedError(NotFoundError, ProjectionError):
    """The event was never parked for this projection."""


class _AlreadyResolvedError(ProjectionError):
    """The parked event was retried or skipped before."""


class _RetryFailedError(ProjectionError):
    """The parked event failed again."""
