"""Restoring a backup chain: checked whole before anything changes, then applied in one
transaction.

``load_chain`` follows a backup's parents back to its full backup; ``verify_files`` checks every
file's size and SHA-256 against its manifest and the chain's links (each incremental starts at
its parent's checkpoint). ``stage`` loads the chain into temporary tables, cut at the point in
time asked for (a position, or a time: whole transactions, as all events of an append share
their time), and checks the row counts against the manifests and that every stream is
contiguous from 1. Only then ``apply_tenant`` replaces one tenant's events, commands and
snapshots (the rest of the store untouched), or ``apply_full`` fills an empty store;
``restore_chain`` runs these steps in order. Run twice,
a restore gives the same store; killed, its transaction rolls back and it is run again.

A command of the tenant whose events the restore removes is recorded in
``event_store.removed_commands`` (migration 011): sent again, it is refused, not re-applied.
"""

from __future__ import annotations

import itertools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from psycopg import AsyncConnection, sql

from acci.eventstore.backup.export import COMMAND_COLUMNS, EVENT_COLUMNS, SNAPSHOT_COLUMNS
from acci.eventstore.backup.manifest import (
    MANIFEST,
    SUFFIX,
    BackupError,
    BackupNotFoundError,
    CorruptBackupError,
    Manifest,
    read_manifest,
    sha256_of,
)
from acci.eventstore.global_order import WRITER_LOCK
from acci.eventstore.records import Position
from acci.eventstore.tenant_scope import set_tenant

log = logging.getLogger(__name__)

_TABLES: Final = {
    "events": ("event_store.events", EVENT_COLUMNS),
    "commands": ("event_store.commands", COMMAND_COLUMNS),
    "snapshots": ("snapshots.aggregate_snapshots", SNAPSHOT_COLUMNS),
}
_AS_RESTORER: Final = "SET LOCAL ROLE acci_restore"
# As the writer trigger (migration 005) would: this transaction writes events.
_WRITER: Final = (
    "SELECT pg_advisory_xact_lock_shared(%s, %s), set_config('acci.event_writer',"
    " pg_backend_pid()::text || '@' || transaction_timestamp()::text, true)"
)


@dataclass(frozen=True, slots=True)
class PointInTime:
    """Where a restore stops: at a position (inclusive), or at a time (events created at or
    before it); neither: the chain's end."""

    position: Position | None = None
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Staged:
    """What a staged chain holds, once cut at the point in time."""

    events: int
    commands: int
    snapshots: int
    tenants: list[str]
    last_position: Position | None


def find_backup(root: Path, backup_id: str) -> Path:
    """The folder of the complete backup ``backup_id`` under ``root``."""
    for scope in sorted(p for p in root.glob("*") if p.is_dir()):
        folder = scope / backup_id
        if (folder / MANIFEST).exists():
            return folder
    raise BackupNotFoundError(f"no complete backup {backup_id!r} under {root}")


def load_chain(root: Path, backup_id: str) -> list[tuple[Path, Manifest]]:
    """The backup and its parents, full backup first; each incremental must start where its
    parent ends."""
    chain: list[tuple[Path, Manifest]] = []
    folder = find_backup(root, backup_id)
    while True:
        manifest = read_manifest(folder)
        if manifest.backup_id != folder.name:
            raise CorruptBackupError(f"{folder}: its manifest names {manifest.backup_id!r}")
        chain.append((folder, manifest))
        if manifest.parent is None:
            break
        parent = folder.parent / manifest.parent
        if not (parent / MANIFEST).exists():
            raise CorruptBackupError(
                f"backup {manifest.backup_id}'s parent {manifest.parent} is missing: the chain"
                " is broken"
            )
        folder = parent
    chain.reverse()
    for (_, before), (_, after) in itertools.pairwise(chain):
        if after.after != before.checkpoint or after.tenant != before.tenant:
            raise CorruptBackupError(
                f"backup {after.backup_id} starts at {after.after}, not where its parent"
                f" {before.backup_id} ends ({before.checkpoint})"
            )
    if chain[0][1].kind != "full":
        raise CorruptBackupError(f"the chain of {backup_id} does not start with a full backup")
    return chain


def verify_files(chain: Sequence[tuple[Path, Manifest]]) -> None:
    """Every file present, of its size and SHA-256; ``CorruptBackupError`` names the first
    that is not."""
    for folder, manifest in chain:
        for entry in manifest.files:
            path = folder / f"{entry.name}{SUFFIX}"
            if not path.exists():
                raise CorruptBackupError(f"{path} is missing")
            size = path.stat().st_size
            if size != entry.bytes:
                raise CorruptBackupError(
                    f"{path} is {size} bytes, its manifest says {entry.bytes} (truncated?)"
                )
            if sha256_of(path) != entry.sha256:
                raise CorruptBackupError(f"{path} does not match its SHA-256 (corrupted)")


async def begin_writing(conn: AsyncConnection[Any]) -> None:
    """First statement of a restore's transaction: it writes events (the writer lock)."""
    await conn.execute(_WRITER, WRITER_LOCK)


async def stage(
    conn: AsyncConnection[Any],
    chain: Sequence[tuple[Path, Manifest]],
    until: PointInTime,
    *,
    tenant: str | None = None,
) -> Staged:
    """Load the chain into temporary tables (``restore_<name>``, dropped at commit), keep
    ``tenant``'s rows only (if given), cut at ``until``, and check it; ``CorruptBackupError``
    before anything else is changed."""
    for name, (table, columns) in _TABLES.items():
        await conn.execute(
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                sql.Identifier(f"restore_{name}"),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(table),
            )
        )
    for folder, manifest in chain:
        for entry in manifest.files:
            await _copy_in(conn, folder / f"{entry.name}{SUFFIX}", entry.name)
    await _check_counts(conn, [m for _, m in chain])
    if tenant is not None:
        for name in _TABLES:
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE tenant_id <> %s").format(
                    sql.Identifier(f"restore_{name}")
                ),
                (tenant,),
            )
    await _cut(conn, until)
    await _check_streams(conn)
    return await _staged(conn)


async def _copy_in(conn: AsyncConnection[Any], path: Path, name: str) -> None:
    columns = _TABLES[name][1]
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(f"restore_{name}"), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    async with conn.cursor().copy(statement) as copy:
        with path.open("rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                try:
                    await copy.write(decompressor.decompress(block))
                except zlib.error as e:
                    raise CorruptBackupError(f"{path} is not readable gzip: {e}") from e
            if not decompressor.eof:
                raise CorruptBackupError(f"{path} ends early (truncated)")


async def _check_counts(conn: AsyncConnection[Any], manifests: Sequence[Manifest]) -> None:
    for name in ("events", "commands", "snapshots"):
        expected = sum(f.rows for m in manifests for f in m.files if f.name == name)
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(f"restore_{name}"))
        )
        row = await cur.fetchone()
        found = int(row[0]) if row else 0
        if found != expected:
            raise CorruptBackupError(f"the chain holds {found} {name}, its manifests {expected}")


async def _cut(conn: AsyncConnection[Any], until: PointInTime) -> None:
    if until.position is not None:
        await conn.execute(
            "DELETE FROM restore_events WHERE (transaction_id, global_position) > (%s::xid8, %s)",
            (str(until.position.transaction_id), until.position.global_position),
        )
    if until.time is not None:
        await conn.execute("DELETE FROM restore_events WHERE created_at > %s", (until.time,))
    if until.position is None and until.time is None:
        return  # the chain's end: its commands and snapshots are those of its events already
    # Commands of the transactions kept, snapshots of the stream versions kept: each one pass
    # (a stream's head, grouped once; a correlated max per snapshot rescanned every event).
    await conn.execute(
        "DELETE FROM restore_commands AS c WHERE NOT EXISTS (SELECT FROM restore_events AS e"
        " WHERE e.transaction_id = c.transaction_id AND e.tenant_id = c.tenant_id)"
    )
    await conn.execute(
        "CREATE TEMP TABLE restore_heads ON COMMIT DROP AS SELECT tenant_id, aggregate_type,"
        " aggregate_id, max(sequence_number) AS head FROM restore_events GROUP BY 1, 2, 3"
    )
    await conn.execute("ANALYZE restore_heads")
    await conn.execute(
        "DELETE FROM restore_snapshots AS s WHERE NOT EXISTS (SELECT FROM restore_heads AS h"
        " WHERE h.tenant_id = s.tenant_id AND h.aggregate_type = s.aggregate_type"
        " AND h.aggregate_id = s.aggregate_id AND h.head >= s.sequence_number)"
    )


async def _check_streams(conn: AsyncConnection[Any]) -> None:
    cur = await conn.execute(
        "SELECT tenant_id, aggregate_type, aggregate_id, count(*), min(sequence_number),"
        " max(sequence_number) FROM restore_events GROUP BY 1, 2, 3"
        " HAVING min(sequence_number) <> 1 OR max(sequence_number) <> count(*) LIMIT 1"
    )
    row = await cur.fetchone()
    if row is not None:
        tenant, kind, aggregate, n, low, high = row
        raise CorruptBackupError(
            f"stream {kind} {aggregate} of tenant {tenant} is not contiguous in the chain"
            f" ({n} events, sequence {low}..{high})"
        )


async def _staged(conn: AsyncConnection[Any]) -> Staged:
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM restore_events), (SELECT count(*) FROM restore_commands),"
        " (SELECT count(*) FROM restore_snapshots),"
        " (SELECT array_agg(DISTINCT tenant_id) FROM restore_events),"
        " (SELECT transaction_id::text || ':' || global_position FROM restore_events"
        " ORDER BY transaction_id DESC, global_position DESC LIMIT 1)"
    )
    row = await cur.fetchone()
    assert row is not None
    events, commands, snapshots, tenants, last = row
    return Staged(
        int(events),
        int(commands),
        int(snapshots),
        sorted(tenants or []),
        Position.parse(last) if last else None,
    )


async def apply_tenant(conn: AsyncConnection[Any], tenant: str, restore_id: str) -> None:
    """Replace ``tenant``'s events, commands and snapshots with the staged ones (the caller's
    transaction, begun with ``begin_writing``); its commands that are not restored are
    recorded as removed, and the restore itself (the next backups of its scope are full)."""
    await _check_transaction_ids(conn)
    await conn.execute(
        "INSERT INTO event_store.restores (restore_id, tenant_id) VALUES (%s, %s)"
        " ON CONFLICT (restore_id) DO NOTHING",
        (restore_id, tenant),
    )
    await conn.execute(
        "INSERT INTO event_store.removed_commands (command_id, tenant_id, restore_id)"
        " SELECT c.command_id, c.tenant_id, %s FROM event_store.commands AS c"
        " WHERE c.tenant_id = %s AND NOT EXISTS (SELECT FROM restore_commands AS r"
        " WHERE r.command_id = c.command_id) ON CONFLICT (command_id) DO NOTHING",
        (restore_id, tenant),
    )
    await conn.execute(
        "DELETE FROM event_store.removed_commands WHERE command_id IN"
        " (SELECT command_id FROM restore_commands)"
    )
    for table in ("event_store.events", "event_store.commands", "snapshots.aggregate_snapshots"):
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(sql.SQL(table)), (tenant,)
        )
    await _insert_staged(conn, tenant)


async def apply_full(conn: AsyncConnection[Any]) -> None:
    """Fill an empty store with the staged chain (the caller's transaction, begun with
    ``begin_writing``); the global position's sequence continues after the restored events."""
    cur = await conn.execute("SELECT EXISTS (SELECT FROM event_store.events)")
    row = await cur.fetchone()
    if row and row[0]:
        raise CorruptBackupError(
            "a full restore goes into an empty store; this one has events (restore one tenant"
            " with --tenant, or into a new database)"
        )
    await _check_transaction_ids(conn)
    # The backup holds no keys: sealed events restored before their keys are imported could
    # never be read, and the store would no longer be empty for the restore to run again.
    row = await (await conn.execute(_KEYLESS)).fetchone()
    if row is not None:
        raise BackupError(
            f"tenant {row[0]}'s events are sealed with data key version {row[1]}, which this"
            " database does not have: import the keys first (`acci keys export` on the source,"
            " `acci keys import` here), then restore (nothing was changed)"
        )
    await _insert_staged(conn, None)
    await conn.execute(
        "SELECT setval(pg_get_serial_sequence('event_store.events', 'global_position'),"
        " greatest((SELECT max(global_position) FROM event_store.events), 1))"
    )


async def restore_chain(
    conn: AsyncConnection[Any],
    chain: Sequence[tuple[Path, Manifest]],
    until: PointInTime,
    *,
    tenant: str | None = None,
    restore_id: str = "restore",
) -> Staged:
    """The whole restore in the caller's transaction: the writer lock, the chain staged and
    checked (cut at ``until``), then ``tenant``'s rows replaced (recorded as ``restore_id``)
    or, without a tenant, an empty store filled. Returns what was staged.

    A tenant's restore runs as ``acci_restore`` (migration 015) with the transaction scoped to
    the tenant: row-level security keeps every statement of it inside that tenant. The caller's
    role is back when it returns."""
    await begin_writing(conn)
    if tenant is None:
        staged = await stage(conn, chain, until)
        await apply_full(conn)
        return staged
    await conn.execute(_AS_RESTORER)
    await set_tenant(conn, tenant)
    staged = await stage(conn, chain, until, tenant=tenant)
    if not staged.events:
        raise BackupError(
            f"the chain holds no event of tenant {tenant} up to that point: the"
            " restore would leave the tenant with none (nothing was changed)"
        )
    await apply_tenant(conn, tenant, restore_id)
    await conn.execute("RESET ROLE")
    return staged


# A sealed event whose tenant has no data key of its version in this database.
_KEYLESS: Final = """
SELECT e.tenant_id, e.data->>'kver' FROM restore_events AS e WHERE e.data ? '$enc' AND NOT EXISTS
 (SELECT FROM event_store.tenant_keys AS k
   WHERE k.tenant_id = e.tenant_id AND k.key_version::text = e.data->>'kver') LIMIT 1
"""


async def _check_transaction_ids(conn: AsyncConnection[Any]) -> None:
    """Refuse events whose transaction ids this cluster has not reached: readers would take
    them for transactions still open, and never read them."""
    cur = await conn.execute(
        "SELECT max(transaction_id)::text, pg_current_xact_id()::text FROM restore_events"
    )
    row = await cur.fetchone()
    if row and row[0] is not None and int(row[0]) >= int(row[1]):
        raise BackupError(
            f"the backup's transaction ids run to {row[0]}, and this PostgreSQL cluster is at"
            f" {row[1]}: restore into a database of the cluster it was taken from, or of one"
            " whose transaction counter is past it"
        )


async def _insert_staged(conn: AsyncConnection[Any], tenant: str | None) -> None:
    """The staged rows (of ``tenant``, or all) into the store's tables, events in order."""
    where = sql.SQL(" WHERE tenant_id = %(tenant)s") if tenant is not None else sql.SQL("")
    for name, (table, columns) in _TABLES.items():
        listed = sql.SQL(", ").join(map(sql.Identifier, columns))
        overriding = sql.SQL("OVERRIDING SYSTEM VALUE ") if name == "events" else sql.SQL("")
        order = " ORDER BY transaction_id, global_position" if name == "events" else ""
        await conn.execute(
            sql.SQL("INSERT INTO {} ({}) {}SELECT {} FROM {}{}{}").format(
                sql.SQL(table),
                listed,
                overriding,
                listed,
                sql.Identifier(f"restore_{name}"),
                where,
                sql.SQL(order),
            ),
            {"tenant": tenant},
        )
