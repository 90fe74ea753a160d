"""The versions of each read model in the database: their tables, the live one's views, the switch.

``read_models.versions`` lists every version that has tables (migration 010). Queries read
``read_models.<table>``, a view of the live version's table; the live projection's checkpoint
names the version it writes. ``switch`` moves both, in the caller's transaction, so a query
reads either the old version or the new one, never a mix, and the live projection's next batch
writes the new one (a batch that read the checkpoint before the switch applies nothing).

At every start ``ensure_read_models`` gives each installed read model a live version: it adopts
the tables an older ACCI created under the stable name as version 1, or creates the current
version's tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from acci.readmodels.changes.change import SCHEMA
from acci.readmodels.db import running_ddl, translated
from acci.readmodels.errors import ReadModelError
from acci.readmodels.read_model import ReadModel, rebuild_checkpoint
from acci.readmodels.row_security import secure_tables, secure_views
from acci.readmodels.versioned import physical_table

log = logging.getLogger(__name__)

VersionState = Literal["building", "live", "retired", "failed"]

# A transaction-level lock held while one process creates or switches versions.
LOCK: Final = sql.SQL("SELECT pg_advisory_xact_lock(1094927177, 1380795715)")  # ("ACCI", "RMDL")

_VERSIONS: Final = (
    "SELECT read_model, version, state, created_at, switched_at, drop_after, detail"
    " FROM read_models.versions"
)
_RELKINDS: Final = (
    "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = ANY(%s)"
)
_SET_CHECKPOINT: Final = (
    "INSERT INTO read_models.checkpoints (projection, version, transaction_id, global_position)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (projection) DO UPDATE SET version = EXCLUDED.version,"
    " transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position,"
    " last_error = NULL, updated_at = now()"
)


class ReadModelVersionError(ReadModelError):
    """A version cannot be created, switched to or dropped as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a read model that has tables."""

    read_model: str
    version: int
    state: VersionState
    created_at: datetime
    switched_at: datetime | None
    drop_after: datetime | None
    detail: str | None


async def versions(conn: AsyncConnection[Any], read_model: str | None = None) -> list[Version]:
    """Every version with tables (of one read model, or of all), by name and version."""
    if read_model is None:
        cur = await conn.execute(_VERSIONS + " ORDER BY read_model, version")
    else:
        cur = await conn.execute(
            _VERSIONS + " WHERE read_model = %s ORDER BY version", (read_model,)
        )
    return [Version(*row) for row in await cur.fetchall()]


async def all_versions(pool: AsyncConnectionPool) -> list[Version]:
    """``versions`` of every read model, on a connection of its own."""
    with translated():
        async with pool.connection() as conn:
            return await versions(conn)


async def live_version(conn: AsyncConnection[Any], read_model: str) -> int | None:
    """The live version of ``read_model`` (None: it has none yet)."""
    found = [v.version for v in await versions(conn, read_model) if v.state == "live"]
    return found[0] if found else None


async def ensure_read_models(pool: AsyncConnectionPool, read_models: Sequence[ReadModel]) -> None:
    """Give every read model a live version with its views (idempotent; run at start)."""
    for model in read_models:
        with translated():
            async with pool.connection() as conn, conn.transaction():
                await conn.execute(LOCK)
                if await live_version(conn, model.name) is None:
                    await _first_version(conn, model)
                await _secure_live(conn, model)
                await _drop_expired(conn, model)


async def _first_version(conn: AsyncConnection[Any], model: ReadModel) -> None:
    kinds = await _relkinds(conn, model.tables)
    if kinds and all(kinds.get(t) in ("r", "p") for t in model.tables):
        # Tables an older ACCI created under the stable name: they become version 1, with their
        # rows and the checkpoint that matches them.
        for table in model.tables:
            await conn.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    sql.Identifier(SCHEMA, table), sql.Identifier(physical_table(table, 1))
                )
            )
        version = 1
        await conn.execute(
            "UPDATE read_models.checkpoints SET version = 1 WHERE projection = %s", (model.name,)
        )
    elif kinds:
        raise ReadModelVersionError(
            f"read model {model.name!r}: read_models has {sorted(kinds)} already, which are"
            " not the tables of one of its versions; move them away and start again"
        )
    else:
        version = model.version
        await create_tables(conn, model, version)
        await conn.execute(_SET_CHECKPOINT, (model.name, version, 0, 0))
    await conn.execute(
        "INSERT INTO read_models.versions (read_model, version, state, switched_at)"
        " VALUES (%s, %s, 'live', now())",
        (model.name, version),
    )
    await replace_views(conn, model, version)
    log.info(
        "read model version created" if version == model.version else "read model adopted",
        extra={"read_model": model.name, "version": version, "tables": list(model.tables)},
    )


async def _drop_expired(conn: AsyncConnection[Any], model: ReadModel) -> None:
    """Drop retired versions past their grace period that their rebuild did not drop (it was
    cancelled after the switch, or terminated)."""
    for v in await versions(conn, model.name):
        if v.state == "retired" and v.drop_after is not None and v.drop_after <= datetime.now(UTC):
            await forget_version(conn, model, v.version)
            log.info(
                "retired read model version dropped",
                extra={"read_model": model.name, "version": v.version},
            )


async def _secure_live(conn: AsyncConnection[Any], model: ReadModel) -> None:
    """The live version's tables and views under the tenant policy: a database created before
    migration 012 gets it at its next start (a no-op after that)."""
    version = await live_version(conn, model.name)
    if version is not None:
        await secure_tables(conn, model, version)
        await secure_views(conn, model, version)


async def _relkinds(conn: AsyncConnection[Any], tables: Sequence[str]) -> dict[str, str]:
    cur = await conn.execute(_RELKINDS, (SCHEMA, list(tables)))
    return {name: kind for name, kind in await cur.fetchall()}


async def create_tables(conn: AsyncConnection[Any], model: ReadModel, version: int) -> None:
    """Run version ``version``'s DDL (the read model's own code: never input), and put the
    tenant policy on its tables."""
    with running_ddl(model.name, version):
        await conn.execute(model.create_statement(version))
    await secure_tables(conn, model, version)


async def drop_tables(conn: AsyncConnection[Any], model: ReadModel, version: int) -> None:
    """Drop version ``version``'s tables, if they exist."""
    for table in model.tables:
        await conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(
                sql.Identifier(SCHEMA, physical_table(table, version))
            )
        )


async def replace_views(conn: AsyncConnection[Any], model: ReadModel, version: int) -> None:
    """Point each stable name at version ``version``'s table (in the caller's transaction)."""
    for table in model.tables:
        view = sql.Identifier(SCHEMA, table)
        await conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
        await conn.execute(
            sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(
                view, sql.Identifier(SCHEMA, physical_table(table, version))
            )
        )
        await conn.execute(
            sql.SQL("COMMENT ON VIEW {} IS {}").format(
                view, sql.Literal(f"read model {model.name}, live version {version}")
            )
        )
    await secure_views(conn, model, version)


async def start_version(conn: AsyncConnection[Any], model: ReadModel, version: int) -> None:
    """Create version ``version``'s tables and its rebuild's checkpoint at the start, in state
    'building' (in the caller's transaction). A version left 'building' or 'failed' by an
    earlier rebuild is dropped and started again; a live or retired one is refused."""
    await conn.execute(LOCK)
    found = {v.version: v for v in await versions(conn, model.name)}
    existing = found.get(version)
    if existing is not None and existing.state in ("live", "retired"):
        raise ReadModelVersionError(
            f"version {version} of read model {model.name!r} is {existing.state}; rebuild into"
            f" a version above {max(found)}"
        )
    live = [v.version for v in found.values() if v.state == "live"]
    if live and version < live[0]:
        raise ReadModelVersionError(
            f"version {version} of read model {model.name!r} is below the live version"
            f" {live[0]}; rebuild into a version above {max(found)}"
        )
    await forget_version(conn, model, version)
    await create_tables(conn, model, version)
    await conn.execute(_SET_CHECKPOINT, (rebuild_checkpoint(model.name, version), version, 0, 0))
    await conn.execute(
        "INSERT INTO read_models.versions (read_model, version, state) VALUES (%s, %s, 'building')",
        (model.name, version),
    )


async def forget_version(conn: AsyncConnection[Any], model: ReadModel, version: int) -> None:
    """Drop version ``version``'s tables, its rebuild's checkpoint and parked events, and its
    row (in the caller's transaction)."""
    await drop_tables(conn, model, version)
    checkpoint = rebuild_checkpoint(model.name, version)
    await conn.execute("DELETE FROM read_models.checkpoints WHERE projection = %s", (checkpoint,))
    await conn.execute("DELETE FROM read_models.dead_letters WHERE projection = %s", (checkpoint,))
    await conn.execute(
        "DELETE FROM read_models.versions WHERE read_model = %s AND version = %s",
        (model.name, version),
    )


async def set_state(
    conn: AsyncConnection[Any], name: str, version: int, state: VersionState, detail: str | None
) -> None:
    """Record a version's state (a rebuild whose validation failed: 'failed', and why)."""
    await conn.execute(
        "UPDATE read_models.versions SET state = %s, detail = %s"
        " WHERE read_model = %s AND version = %s",
        (state, detail, name, version),
    )


def rebuild_target(found: Sequence[Version]) -> int:
    """The version a rebuild without ``--version`` goes to: the one being built (joined), or
    the one after the newest that went live."""
    building = [v.version for v in found if v.state == "building"]
    if building:
        return max(building)
    return max((v.version for v in found if v.state in ("live", "retired")), default=0) + 1
