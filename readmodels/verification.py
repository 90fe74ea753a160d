"""Does each live read model equal a fold of the event store? (``acci verify``)

For each read model: its events up to the live checkpoint are folded (one statement per change,
``validation.py``) into scratch copies of the live version's tables; then, holding the live
checkpoint (its projection's next commit waits a moment), the events it applied since are
folded too, and the two are compared row by row (all rows, or one tenant's) at the same position.
Nothing the read model serves is changed; the scratch tables are dropped.
"""

from __future__ import annotations

import uuid

from acci.eventstore.store import EventStore
from acci.readmodels.checkpoints import CheckpointStore
from acci.readmodels.db import translated
from acci.readmodels.dead_letters import DeadLetterStore
from acci.readmodels.read_model import ReadModel
from acci.readmodels.validation import TableComparison, compare, drop_fold, fold, fold_tables
from acci.readmodels.versioned import physical_table


async def verify_read_model(
    store: EventStore, model: ReadModel, *, tenant: str | None = None
) -> list[TableComparison]:
    """The live version of ``model`` (all rows, or ``tenant``'s) against a fold."""
    pool = store.pool
    projection = model.projection()
    suffix = f"_verify_{uuid.uuid4().hex[:6]}"
    start = await CheckpointStore(pool).get(model.name)
    version = start.version
    try:
        skipped = await DeadLetterStore(pool).not_applied(model.name)
        await fold(
            store,
            model,
            projection,
            version,
            until=start.position,
            skipped=skipped,
            suffix=suffix,
            tenant=tenant,
        )
        with translated():
            async with pool.connection() as conn, conn.transaction():
                live = await CheckpointStore.lock(conn, model.name)
                if live.version != version:
                    return []  # switched meanwhile by a rebuild (which checked itself)
                if live.position > start.position:
                    await fold(
                        store,
                        model,
                        projection,
                        version,
                        until=live.position,
                        after=start.position,
                        skipped=skipped,
                        suffix=suffix,
                        tenant=tenant,
                    )
                tables = {t: physical_table(t, version) for t in model.tables}
                return await compare(
                    conn, model, fold_tables(model, version, suffix), tables, tenant=tenant
                )
    finally:
        await drop_fold(pool, model, version, suffix)
