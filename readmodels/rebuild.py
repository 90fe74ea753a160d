"""A blue/green rebuild of one read model into a new version, step by step.

``start`` creates version N's tables beside the live ones and a checkpoint of its own
(``<name>@v<N>``) at the start of the global order; ``project`` runs the projection into them
with the catch-up engine (exactly once, resumable from that checkpoint); ``validate_fold``
compares them with a fold of the event store; ``switch`` holds the live projection's checkpoint,
brings version N to exactly its position, compares the two versions where their shape is the
same, and switches the live version and its views in that transaction. ``retire`` drops the old
version later; ``abandon`` drops a version that never went live. Orchestration (phases, retries,
the grace period) is the ``RebuildReadModelWorkflow``'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from psycopg import AsyncConnection

from acci.domain.registry import EventRegistry
from acci.domain.registry import registry as default_registry
from acci.eventstore.records import Position
from acci.eventstore.store import EventStore
from acci.readmodels.checkpoints import CheckpointStore
from acci.readmodels.db import translated
from acci.readmodels.errors import ProjectionError
from acci.readmodels.projections import Projection
from acci.readmodels.read_model import ReadModel, rebuild_checkpoint
from acci.readmodels.reports import BatchReport
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.validation import (
    TableComparison,
    compare,
    drop_fold,
    fold,
    fold_tables,
)
from acci.readmodels.versioned import physical_table
from acci.readmodels.versions import (
    LOCK,
    Version,
    forget_version,
    live_version,
    replace_views,
    set_state,
    start_version,
    versions,
)

_ADVANCE_PAGE: Final = 1_000


class RebuildFailedError(ProjectionError):
    """The rebuild cannot go on (an event fails in the new version); the live version is
    untouched. The message names the event."""


@dataclass(frozen=True, slots=True)
class Switch:
    """What ``switch`` did: switched (or not: the live projection is behind the rebuild, try
    again), the version it retired and when that is dropped, where the new version went live,
    and the comparison with the live version it made (empty, with ``note``, when it made none)."""

    switched: bool
    retired: int | None = None
    drop_after: datetime | None = None
    position: Position | None = None
    comparisons: list[TableComparison] = field(default_factory=list)
    note: str | None = None


class Rebuild:
    """Rebuilds ``model`` into version ``version``."""

    def __init__(
        self,
        store: EventStore,
        model: ReadModel,
        version: int,
        *,
        registry: EventRegistry = default_registry,
        projection: Projection | None = None,
    ) -> None:
        """``projection``: the instance to run (default: a new one of the model's class)."""
        self.store = store
        self.model = model
        self.version = version
        self.checkpoint = rebuild_checkpoint(model.name, version)
        self.projection = projection or model.projection(registry=registry)
        self.runner = ProjectionRunner(
            self.projection,
            store,
            checkpoint=self.checkpoint,
            checkpoints=CheckpointStore(store.pool, create=False),
            lag_cap=1,
        )

    @property
    def tables(self) -> dict[str, str]:
        return {t: physical_table(t, self.version) for t in self.model.tables}

    async def start(self) -> None:
        """Create the version's tables and its checkpoint at the start (dropping what an earlier
        rebuild of it left); ``ReadModelVersionError`` if it is live or retired."""
        with translated():
            async with self.store.pool.connection() as conn, conn.transaction():
                await start_version(conn, self.model, self.version)

    async def state(self) -> Version | None:
        """This version's row (None: it has no tables)."""
        with translated():
            async with self.store.pool.connection() as conn:
                found = [v for v in await versions(conn, self.model.name)]
        return next((v for v in found if v.version == self.version), None)

    async def position(self) -> Position:
        return await self.runner.get_position()

    async def project(
        self, *, budget: float, heartbeat: Callable[[], None] | None = None
    ) -> BatchReport:
        """Catch the new version up for at most ``budget`` seconds (pipelined batches)."""
        return await self.runner.catch_up(limit=_ADVANCE_PAGE, budget=budget, heartbeat=heartbeat)

    async def park(self, event_id: uuid.UUID, attempts: int) -> BatchReport:
        """Park a failing event as the projection's policy says (skip: move past it)."""
        return await self.runner.run_batch(limit=_ADVANCE_PAGE, park=event_id, attempts=attempts)

    async def parked(self) -> set[uuid.UUID]:
        """The events the rebuild parked and did not apply."""
        return await self.runner.dead_letters.not_applied(self.checkpoint)

    async def validate_fold(self) -> list[TableComparison]:
        """The new version against a fold of the event store up to its position."""
        position = await self.position()
        skipped = await self.parked()
        try:
            await fold(
                self.store,
                self.model,
                self.projection,
                self.version,
                until=position,
                skipped=skipped,
            )
            with translated():
                async with self.store.pool.connection() as conn:
                    return await compare(
                        conn, self.model, fold_tables(self.model, self.version), self.tables
                    )
        finally:
            await drop_fold(self.store.pool, self.model, self.version)

    async def switch(self, *, grace: timedelta) -> Switch:
        """Make the new version live, if it equals the live one at the live one's position.

        In one transaction: lock the live checkpoint (the live projection's next commit waits),
        bring the new version to exactly its position, compare where the shape is the same,
        then move the checkpoint to the new version, retire the old one (dropped after
        ``grace``), move parked events with their version, and point the views at the new one.
        """
        name = self.model.name
        with translated():
            async with self.store.pool.connection() as conn, conn.transaction():
                await conn.execute(LOCK)
                old = await live_version(conn, name)
                live = await CheckpointStore.lock(conn, name)
                mine = await self.position()
                if old is None or live.version != old:
                    raise RebuildFailedError(
                        f"read model {name!r} has no consistent live version to switch from"
                    )
                if live.position < mine and not live.paused:
                    return Switch(switched=False, note="the live projection is behind")
                if live.position > mine:
                    await self._advance(live.position)
                    mine = await self.position()
                comparisons, note = await self._compare_live(conn, old, live.position, mine)
                if any(not c.equal for c in comparisons):
                    return Switch(switched=False, comparisons=comparisons, note=note)
                drop_after = await self._switch(conn, old, mine, grace)
        return Switch(True, old, drop_after, mine, comparisons, note)

    async def _compare_live(
        self, conn: AsyncConnection[Any], old: int, live: Position, mine: Position
    ) -> tuple[list[TableComparison], str | None]:
        if self.model.ddl_for(old) != self.model.ddl_for(self.version):
            return [], f"version {old}'s shape differs: compared with the fold only"
        if live != mine:
            return [], f"the live projection is paused at {live}: compared with the fold only"
        old_tables = {t: physical_table(t, old) for t in self.model.tables}
        return await compare(conn, self.model, old_tables, self.tables), None

    async def _advance(self, until: Position) -> None:
        """Apply the events up to exactly ``until`` (the live projection's position)."""
        while (position := await self.position()) < until:
            report = await self.runner.run_batch(limit=_ADVANCE_PAGE, until=until)
            if report.failure is not None or report.paused or report.applied == 0:
                reason = report.failure.error if report.failure else report.last_error
                raise RebuildFailedError(
                    f"version {self.version} of {self.model.name!r} cannot reach the live"
                    f" position {until} from {position}: {reason or 'no progress'}"
                )

    async def _switch(
        self, conn: AsyncConnection[Any], old: int, position: Position, grace: timedelta
    ) -> datetime:
        name = self.model.name
        await conn.execute(
            "UPDATE read_models.checkpoints SET version = %s, transaction_id = %s,"
            " global_position = %s, last_error = NULL, updated_at = now() WHERE projection = %s",
            (self.version, *position, name),
        )
        await conn.execute(
            "DELETE FROM read_models.checkpoints WHERE projection = %s", (self.checkpoint,)
        )
        # Parked events belong to the version that parked them.
        await conn.execute(
            "UPDATE read_models.dead_letters SET projection = %s WHERE projection = %s",
            (rebuild_checkpoint(name, old), name),
        )
        await conn.execute(
            "UPDATE read_models.dead_letters SET projection = %s WHERE projection = %s",
            (name, self.checkpoint),
        )
        cur = await conn.execute(
            "UPDATE read_models.versions SET state = 'retired', drop_after = now() + %s"
            " WHERE read_model = %s AND version = %s RETURNING drop_after",
            (grace, name, old),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(
            "UPDATE read_models.versions SET state = 'live', switched_at = now(), detail = NULL"
            " WHERE read_model = %s AND version = %s",
            (name, self.version),
        )
        await replace_views(conn, self.model, self.version)
        return row[0]  # type: ignore[no-any-return]

    async def fail(self, detail: str) -> None:
        """Record that the new version failed its validation (its tables stay, to look at)."""
        with translated():
            async with self.store.pool.connection() as conn, conn.transaction():
                await conn.execute(LOCK)
                await set_state(conn, self.model.name, self.version, "failed", detail[:2000])

    async def abandon(self) -> bool:
        """Drop the new version if it never went live (a cancelled rebuild); True if dropped."""
        with translated():
            async with self.store.pool.connection() as conn, conn.transaction():
                await conn.execute(LOCK)
                state = {v.version: v.state for v in await versions(conn, self.model.name)}
                if state.get(self.version) in ("live", "retired"):
                    return False
                await forget_version(conn, self.model, self.version)
                return True


async def retire(store: EventStore, model: ReadModel, version: int) -> bool:
    """Drop a retired version's tables and parked events; True if there was one to drop."""
    with translated():
        async with store.pool.connection() as conn, conn.transaction():
            await conn.execute(LOCK)
            state = {v.version: v.state for v in await versions(conn, model.name)}
            if state.get(version) != "retired":
                return False
            await forget_version(conn, model, version)
            return True
