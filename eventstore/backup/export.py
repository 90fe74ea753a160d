"""Making a backup: the log cut at a gap-free checkpoint, streamed out with COPY, manifest last.

One REPEATABLE READ, read-only transaction: its first statement finds the checkpoint (the
newest event ``read_all`` can reach: every event before it is committed, and none can commit
before it later), and every file and count is read from that one snapshot. Events are those
after the parent's checkpoint (an incremental backup) and up to this one; commands are those of
the same transactions; snapshots (full backups only) those of the streams' events up to the
checkpoint. Each file is PostgreSQL's binary COPY, gzip-compressed as it streams, its SHA-256
taken on the way. The manifest is written last: a backup killed before it has none and is
never listed or used (``retention.py`` removes such folders).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from acci.domain.registry import registry
from acci.eventstore.backup.manifest import (
    SUFFIX,
    BackupError,
    BackupKind,
    FileEntry,
    Manifest,
    TenantCounts,
    backup_folder,
    new_backup_id,
    write_manifest,
)
from acci.eventstore.errors import translated
from acci.eventstore.global_order import HEAD
from acci.eventstore.records import START, Position

log = logging.getLogger(__name__)

EVENT_COLUMNS: Final = (
    "global_position transaction_id sequence_number created_at event_id command_id"
    " event_version version tenant_id aggregate_type aggregate_id event_type data metadata"
).split()
COMMAND_COLUMNS: Final = (
    "command_id tenant_id aggregate_type aggregate_id command_type fingerprint event_ids"
    " created_at transaction_id"
).split()
SNAPSHOT_COLUMNS: Final = (
    "sequence_number created_at snapshot_id schema_version tenant_id aggregate_type"
    " aggregate_id state metadata"
).split()

# gzip level 1: about as fast as the disk, and most of what level 6 would save on JSON rows.
_LEVEL: Final = 1
_BLOCK: Final = 1 << 20
Progress = Callable[[str, int], None]
"""Told each file's name and the bytes written so far, as it streams."""


def _columns(names: list[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _range(tenant: str | None) -> sql.Composed:
    tenant_clause = sql.SQL("tenant_id = %(tenant)s AND ") if tenant else sql.SQL("")
    return sql.SQL(
        "{}(transaction_id, global_position) > (%(after_tx)s::xid8, %(after_gp)s)"
        " AND (transaction_id, global_position) <= (%(to_tx)s::xid8, %(to_gp)s)"
    ).format(tenant_clause)


def _events_query(tenant: str | None) -> sql.Composed:
    return sql.SQL(
        "SELECT {} FROM event_store.events WHERE {} ORDER BY transaction_id, global_position"
    ).format(_columns(EVENT_COLUMNS), _range(tenant))


def _commands_query(tenant: str | None) -> sql.Composed:
    # A checkpoint is the last event of a transaction: commands go by their transaction.
    tenant_clause = sql.SQL("tenant_id = %(tenant)s AND ") if tenant else sql.SQL("")
    return sql.SQL(
        "SELECT {} FROM event_store.commands WHERE {}transaction_id > %(after_tx)s::xid8"
        " AND transaction_id <= %(to_tx)s::xid8 ORDER BY transaction_id"
    ).format(_columns(COMMAND_COLUMNS), tenant_clause)


def _snapshots_query(tenant: str | None) -> sql.Composed:
    tenant_clause = sql.SQL("s.tenant_id = %(tenant)s AND ") if tenant else sql.SQL("")
    return sql.SQL(
        "SELECT {} FROM snapshots.aggregate_snapshots AS s WHERE {}s.sequence_number <= ("
        "SELECT max(e.sequence_number) FROM event_store.events AS e"
        " WHERE e.tenant_id = s.tenant_id AND e.aggregate_id = s.aggregate_id"
        " AND e.aggregate_type = s.aggregate_type"
        " AND (e.transaction_id, e.global_position) <= (%(to_tx)s::xid8, %(to_gp)s))"
    ).format(
        sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in SNAPSHOT_COLUMNS),
        tenant_clause,
    )


_EVENT_COUNTS: Final = (
    "SELECT tenant_id, count(*), min(created_at), max(created_at),"
    " (array_agg(transaction_id::text || ':' || global_position"
    " ORDER BY transaction_id, global_position))[1],"
    " (array_agg(transaction_id::text || ':' || global_position"
    " ORDER BY transaction_id DESC, global_position DESC))[1]"
    " FROM event_store.events WHERE {} GROUP BY tenant_id"
)


async def _has_events(pool: AsyncConnectionPool, tenant: str) -> bool:
    with translated():
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT FROM event_store.events WHERE tenant_id = %s)", (tenant,)
            )
            row = await cur.fetchone()
    return bool(row and row[0])


async def create_backup(
    pool: AsyncConnectionPool,
    root: Path,
    *,
    tenant: str | None = None,
    parent: Manifest | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Back up every tenant (or ``tenant``): everything up to now (``parent`` None), or what
    came after ``parent``'s checkpoint — unless a tenant of the scope was restored since the
    parent was taken (its events went back to old positions, which an incremental backup
    would not see): then a full backup. Returns the manifest, written last."""
    if parent is not None and await _restored_since(pool, tenant, parent):
        log.info(
            "a tenant was restored since the parent backup: this backup is full",
            extra={"parent": parent.backup_id, "tenant": tenant},
        )
        parent = None
    if tenant is not None and parent is None and not await _has_events(pool, tenant):
        raise BackupError(
            f"tenant {tenant!r} has no events in this store: nothing to back up (is the name"
            " right?)"
        )
    kind: BackupKind = "full" if parent is None else "incremental"
    started, clock = datetime.now(UTC), time.monotonic()
    backup_id = new_backup_id(kind, started)
    folder = backup_folder(root, tenant, backup_id)
    folder.mkdir(parents=True)
    after = parent.checkpoint_position if parent is not None else START
    exported = await _export(pool, folder, tenant, after, full=parent is None, progress=progress)
    manifest = Manifest(
        backup_id=backup_id,
        kind=kind,
        tenant=tenant,
        parent=None if parent is None else parent.backup_id,
        after=str(after),
        checkpoint=str(exported.checkpoint),
        started_at=started,
        finished_at=datetime.now(UTC),
        duration_seconds=round(time.monotonic() - clock, 3),
        files=exported.files,
        tenants=exported.tenants,
        schema_version=exported.schema_version,
        event_versions=exported.event_versions,
        restores=exported.restores,
    )
    write_manifest(folder, manifest)
    log.info(
        "backup written",
        extra={
            "backup_id": backup_id,
            "kind": kind,
            "tenant": tenant,
            "events": manifest.events,
            "bytes": manifest.bytes,
            "checkpoint": manifest.checkpoint,
            "seconds": manifest.duration_seconds,
        },
    )
    return manifest


@dataclass(frozen=True, slots=True)
class _Exported:
    checkpoint: Position
    tenants: dict[str, TenantCounts]
    files: list[FileEntry]
    schema_version: int
    event_versions: dict[str, int]
    restores: list[str]


async def _export(
    pool: AsyncConnectionPool,
    folder: Path,
    tenant: str | None,
    after: Position,
    *,
    full: bool,
    progress: Progress | None,
) -> _Exported:
    """Every file and count, from one REPEATABLE READ snapshot cut at the readable head."""
    with translated():
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            checkpoint = await _checkpoint(conn)
            params = {
                "tenant": tenant,
                "after_tx": str(after.transaction_id),
                "after_gp": after.global_position,
                "to_tx": str(checkpoint.transaction_id),
                "to_gp": checkpoint.global_position,
            }
            tenants = await _counts(conn, tenant, params, with_snapshots=full)
            queries = [("events", _events_query), ("commands", _commands_query)]
            if full:
                queries.append(("snapshots", _snapshots_query))
            files = [
                await _copy_out(conn, query(tenant), params, folder, name, progress)
                for name, query in queries
            ]
            schema_version, event_versions = await _versions(conn)
            restores = await _restores(conn, tenant)
    files = [
        f.model_copy(update={"rows": sum(_rows_of(f.name, t) for t in tenants.values())})
        for f in files
    ]
    return _Exported(checkpoint, tenants, files, schema_version, event_versions, restores)


_RESTORES: Final = (
    "SELECT restore_id FROM event_store.restores"
    " WHERE %(tenant)s::text IS NULL OR tenant_id = %(tenant)s"
)


async def _restores(conn: AsyncConnection[Any], tenant: str | None) -> list[str]:
    """The tenant restores of the scope that have committed (in the caller's snapshot)."""
    cur = await conn.execute(_RESTORES, {"tenant": tenant})
    return sorted(row[0] for row in await cur.fetchall())


async def _restored_since(pool: AsyncConnectionPool, tenant: str | None, parent: Manifest) -> bool:
    """A restore of the scope committed that ``parent``'s snapshot did not see."""
    with translated():
        async with pool.connection() as conn:
            found = await _restores(conn, tenant)
    return bool(set(found) - set(parent.restores))


def _rows_of(name: str, counts: TenantCounts) -> int:
    return {"events": counts.events, "commands": counts.commands, "snapshots": counts.snapshots}[
        name
    ]


async def _checkpoint(conn: AsyncConnection[Any]) -> Position:
    cur = await conn.execute(HEAD[(False, True)], {})
    row = await cur.fetchone()
    return Position(int(row[0]), int(row[1])) if row else START


async def _counts(
    conn: AsyncConnection[Any], tenant: str | None, params: dict[str, Any], *, with_snapshots: bool
) -> dict[str, TenantCounts]:
    cur = await conn.execute(sql.SQL(_EVENT_COUNTS).format(_range(tenant)), params)
    found: dict[str, dict[str, Any]] = {
        t: {
            "events": int(n),
            "first_time": first_time,
            "last_time": last_time,
            "first_position": first,
            "last_position": last,
        }
        for t, n, first_time, last_time, first, last in await cur.fetchall()
    }
    counted = [("commands", _commands_query(tenant))]
    if with_snapshots:
        counted.append(("snapshots", _snapshots_query(tenant)))
    for name, query in counted:
        cur = await conn.execute(
            sql.SQL("SELECT tenant_id, count(*) FROM ({}) AS q GROUP BY tenant_id").format(query),
            params,
        )
        for t, n in await cur.fetchall():
            found.setdefault(t, {"events": 0})[name] = int(n)
    return {t: TenantCounts(**v) for t, v in sorted(found.items())}


async def _copy_out(
    conn: AsyncConnection[Any],
    query: sql.Composed,
    params: dict[str, Any],
    folder: Path,
    name: str,
    progress: Progress | None,
) -> FileEntry:
    """Stream ``query``'s rows as binary COPY into ``folder/<name>.copy.gz``."""
    path = folder / f"{name}{SUFFIX}"
    digest, written = hashlib.sha256(), 0
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(query)
    with path.open("wb") as out:

        def emit(data: bytes) -> None:
            nonlocal written
            if data:
                out.write(data)
                digest.update(data)
                written += len(data)

        # COPY hands over a row at a time: compressed a megabyte at a time instead (one zlib
        # call per row cost more than the rest of the backup's client time).
        pending = bytearray()
        async with conn.cursor().copy(statement, params) as copy:
            async for chunk in copy:
                pending += chunk
                if len(pending) >= _BLOCK:
                    emit(compressor.compress(pending))
                    pending.clear()
                    if progress is not None:
                        progress(name, written)
        emit(compressor.compress(pending))
        emit(compressor.flush())
        out.flush()
        os.fsync(out.fileno())
    return FileEntry(name=name, bytes=written, sha256=digest.hexdigest(), rows=0)


async def _versions(conn: AsyncConnection[Any]) -> tuple[int, dict[str, int]]:
    """The schema's migration number and the stored events' newest version of each type."""
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM public.acci_schema_migrations")
    row = await cur.fetchone()
    versions = {t: registry.current_version(t) for t in registry.event_types()}
    return int(row[0]) if row else 0, versions
