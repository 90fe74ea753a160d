"""ACCI's backups and restores against ``pg_dump -Fc`` / ``pg_restore`` of the same tables.

    .venv/bin/python bench/backup_bench.py [--events N] [--tenants T] [--rounds R] [--keep] [--json]

Set-up (not measured): the database ``acci_bench_backup`` on ``ACCI_BENCH_SERVER_URL`` is
created afresh and prepared as a worker prepares one (``prepare_database``), then loaded with N
events (1,000,000) over T tenants (100), exactly N/T each: ``readside_bench``'s generator run per
tenant (seed 42 + k, one tenant each, its events the same mix of tenant and user events) with the
seat events ``rebuild_bench`` adds, the tenants interleaved at random, stored by
``readside_bench.store_events`` (``append_many`` of 1,000 commands at a time); then one snapshot
of each tenant's ``Tenant`` aggregate (``AggregateRepository.snapshot``), and VACUUM ANALYZE.
The backups go to a temporary folder, removed at the end.

Then, in R rounds (2) each, the sides in turn (who goes first rotates round by round):

A. full backup, N events: ACCI ``create_backup(pool, root)`` (every tenant) against ``pg_dump -Fc
   -t event_store.events -t event_store.commands -t snapshots.aggregate_snapshots -f FILE DB``.
B. (once) N/100 more events appended the same way (N/(100 T) per tenant: each tenant's generated
   stream continued), timed on its own.
C. after B: ACCI incremental backup (``parent=`` the round's full backup of A), ACCI one-tenant
   backup (``tenant=T``, the middle tenant) and, as pg_dump has no per-tenant mode, psql's
   ``\\copy (SELECT * FROM <table> WHERE tenant_id = T) TO FILE (FORMAT binary)`` of the three
   tables in one REPEATABLE READ transaction (uncompressed).
D. full restore of A's backups into fresh databases (``acci_bench_backup_target_acci`` and
   ``..._pg``, each re-created and prepared with ``prepare_database`` first, not timed): ACCI
   ``load_chain``, ``verify_files``, then ``begin_writing``, ``stage``, ``apply_full`` in one
   transaction (commit included), against ``pg_restore --data-only -d TARGET FILE``. Each target
   is then compared with the source up to the backup's checkpoint (row count and a sum of row
   hashes of each table; not timed).
E. one-tenant restores into the loaded database (the last ACCI target of D, its read models
   caught up first, not timed), the tenant's rows replaced: ACCI from the one-tenant backup's
   chain and from the every-tenant chain (the full backup and C's incremental: it stages every
   tenant, then keeps one), each ``begin_writing``, ``stage(tenant=T)``, ``apply_tenant`` in one
   transaction (commit included); ``refresh_tenant`` (the tenant's read-model rows made again)
   timed apart, in a transaction of its own; and psql's ``\\copy FROM`` of C's files after
   deleting the tenant's rows, in one transaction (``psql -1``). After each, the tenant's rows
   are compared with the source's.

A figure is the median over rounds; a ratio is the median of the same round's ACCI seconds over
the baseline's (above 1: ACCI slower), lowest and highest in brackets. Targets: ACCI full backup
and full restore within 1.5x pg_dump / pg_restore; ACCI incremental backup faster than the full
pg_dump, one-tenant restores faster than the full pg_restore. The machine is shared and noisy.
The databases are dropped at the end unless ``--keep``. Progress goes to stderr; the markdown
table and a JSON line to stdout (``--json``: only the JSON line; the table goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from harness import database_url, recreate_database
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from readside_bench import Command, Sizes, commands, store_events, wait_visible
from rebuild_bench import with_seats

from acci.domain import Tenant
from acci.eventstore.backup.export import create_backup
from acci.eventstore.backup.manifest import Manifest
from acci.eventstore.backup.restore import (
    PointInTime,
    apply_full,
    apply_tenant,
    begin_writing,
    load_chain,
    stage,
    verify_files,
)
from acci.eventstore.db import create_pool
from acci.eventstore.global_order import WRITER_LOCK
from acci.eventstore.records import NewEvent, Position
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.readmodels.installed import default_projections
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.schema import prepare_database
from acci.readmodels.shared_log import SharedLog
from acci.readmodels.tenant_refresh import refresh_tenant
from acci.readmodels.waiting import BACKLOG_BATCH

DB = "acci_bench_backup"
TARGET_ACCI = "acci_bench_backup_target_acci"
TARGET_PG = "acci_bench_backup_target_pg"
TABLES = ("event_store.events", "event_store.commands", "snapshots.aggregate_snapshots")
TARGET_FULL = 1.5  # ACCI full backup / pg_dump and full restore / pg_restore, at most
# A restore's statements can run for minutes at this size: no statement timeout (the worker's
# pool has ACCI_DB_STATEMENT_TIMEOUT_MS, 60 s by default).
STATEMENT_TIMEOUT_MS = 0

FULL_BACKUP = "ACCI full backup"
PG_DUMP = "pg_dump -Fc (full)"
APPEND = "append (N/100 more events)"
INCREMENTAL = "ACCI incremental backup"
TENANT_BACKUP = "ACCI one-tenant backup"
COPY_OUT = "psql \\copy out, one tenant"
FULL_RESTORE = "ACCI full restore"
PG_RESTORE = "pg_restore --data-only (full)"
TENANT_RESTORE = "ACCI one-tenant restore, one-tenant chain"
TENANT_RESTORE_ALL = "ACCI one-tenant restore, every-tenant chain"
REFRESH = "refresh_tenant (read models of the tenant)"
COPY_IN = "psql \\copy in, one tenant"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the events ----------------------------------------------------------------------------------


def tenant_id(k: int) -> str:
    return f"bt{k:04d}"


def renamed(stream: Sequence[Command], tenant: str) -> list[Command]:
    """A one-tenant stream of the generator (its tenant ``bt0000``) moved to ``tenant``."""
    if tenant == tenant_id(0):
        return list(stream)
    out: list[Command] = []
    for t, aggregate, kind, event in stream:
        data = json.loads(json.dumps(event.data).replace(t, tenant))
        new = NewEvent(event.event_type, event.event_version, data, event.metadata)
        out.append((tenant, tenant if aggregate == t else aggregate, kind, new))
    return out


def interleaved(streams: Sequence[Sequence[Command]], rng: random.Random) -> list[Command]:
    """The tenants' streams mixed at random, each tenant's events in their order."""
    turns = [k for k, stream in enumerate(streams) for _ in stream]
    rng.shuffle(turns)
    iters = [iter(s) for s in streams]
    return [next(iters[k]) for k in turns]


def generate(events: int, tenants: int) -> tuple[list[Command], list[Command]]:
    """``events`` events over ``tenants`` tenants (as equal as can be), and ``events / 100``
    more that continue each tenant's stream (appended later)."""
    base: list[list[Command]] = []
    more: list[list[Command]] = []
    for k in range(tenants):
        n = events // tenants + (1 if k < events % tenants else 0)
        extra = max(1, n // 100)
        sizes = Sizes(n + extra, 1, 1, 0.0, 0, 0.0, 0, 0)
        stream = renamed(
            with_seats(commands(sizes, random.Random(42 + k)), n + extra), tenant_id(k)
        )
        assert len(stream) == n + extra, f"tenant {k}: {len(stream):,} of {n + extra:,} events"
        base.append(stream[:n])
        more.append(stream[n:])
    rng = random.Random(42)
    return interleaved(base, rng), interleaved(more, rng)


# -- databases -------------------------------------------------------------------------------------


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def pool_for(url: str, size: int = 2) -> AsyncConnectionPool:
    return create_pool(url, min_size=1, max_size=size, statement_timeout_ms=STATEMENT_TIMEOUT_MS)


async def fresh_target(server_url: str, name: str) -> None:
    """The database ``name`` created afresh and prepared as a worker prepares one."""
    recreate_database(server_url, name)
    async with pool_for(database_url(server_url, name), 1) as pool:
        await prepare_database(pool)


async def scalar(
    pool: AsyncConnectionPool, query: LiteralString, params: Sequence[Any] = ()
) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        return None if row is None else row[0]


async def fingerprint(
    pool: AsyncConnectionPool, *, upto: Position | None = None, tenant: str | None = None
) -> dict[str, tuple[int, int]]:
    """Each table's row count and sum of row hashes (all columns): of the rows up to ``upto``
    in the global order (events; commands of those transactions), of ``tenant`` only, or all."""
    out: dict[str, tuple[int, int]] = {}
    for table in TABLES:
        where: list[sql.Composable] = []
        params: dict[str, Any] = {}
        if tenant is not None:
            where.append(sql.SQL("tenant_id = %(tenant)s"))
            params["tenant"] = tenant
        if upto is not None and table == "event_store.events":
            where.append(sql.SQL("(transaction_id, global_position) <= (%(tx)s::xid8, %(gp)s)"))
        elif upto is not None and table == "event_store.commands":
            where.append(sql.SQL("transaction_id <= %(tx)s::xid8"))
        if upto is not None:
            params |= {"tx": str(upto.transaction_id), "gp": upto.global_position}
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM {} AS t{}"
        ).format(
            sql.SQL(table),
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        )
        async with pool.connection() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
            assert row is not None
            out[table] = (int(row[0]), int(row[1]))
    return out


async def run_tool(args: Sequence[str]) -> tuple[float, str]:
    """Run an external tool; its seconds (start to exit) and stderr. RuntimeError if it fails."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    seconds = time.perf_counter() - t0
    text = err.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(args[:3])} ... exited {proc.returncode}: {text[-2000:]}")
    return seconds, text


def psql_line(template: LiteralString, *parts: sql.Composable) -> str:
    """One line of a psql script (a ``\\copy`` is one line), its parts quoted by psycopg."""
    return sql.SQL(template).format(*parts).as_string(None)


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# -- the results ---------------------------------------------------------------------------------


@dataclass
class Side:
    """One side's timed passes: seconds, events and bytes per round, and timed parts."""

    seconds: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)

    def add(
        self, seconds: float, events: int, size: int, parts: dict[str, float] | None = None
    ) -> None:
        self.seconds.append(seconds)
        self.events.append(events)
        self.bytes.append(size)
        for name, s in (parts or {}).items():
            self.parts.setdefault(name, []).append(s)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return statistics.median(e / s for e, s in zip(self.events, self.seconds, strict=True))


@dataclass
class Results:
    sides: dict[str, Side] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def side(self, name: str) -> Side:
        return self.sides.setdefault(name, Side())

    def ratio(self, name: str, over: str) -> tuple[float, float, float]:
        """Median, lowest and highest of the same round's seconds of ``name`` over ``over``."""
        a, b = self.sides[name].seconds, self.sides[over].seconds
        ratios = [x / y for x, y in zip(a, b, strict=False)]
        return statistics.median(ratios), min(ratios), max(ratios)

    def check(self, what: str, found: Any, expected: Any) -> None:
        if found == expected:
            self.checks.append(what)
        else:
            self.problems.append(f"{what}: {found} != {expected}")
            log(f"CHECK FAILED: {what}: {found} != {expected}")


# -- the bench -------------------------------------------------------------------------------------


@dataclass
class Bench:
    server_url: str
    source: AsyncConnectionPool
    root: Path
    tenant: str
    rounds: int
    results: Results = field(default_factory=Results)
    fulls: list[Manifest] = field(default_factory=list)
    dumps: list[Path] = field(default_factory=list)
    incrementals: list[Manifest] = field(default_factory=list)
    tenant_backups: list[Manifest] = field(default_factory=list)
    copies: list[Path] = field(default_factory=list)
    pg_restore_flags: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return database_url(self.server_url, DB)

    async def in_rounds(self, sides: dict[str, Callable[[int], Awaitable[None]]]) -> None:
        """Each side once per round; who goes first rotates round by round."""
        names = list(sides)
        for r in range(self.rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                gc.collect()
                await sides[name](r)
                side = self.results.sides[name]
                log(
                    f"round {r + 1}: {name}: {side.seconds[-1]:.2f} s,"
                    f" {side.events[-1] / side.seconds[-1]:,.0f} ev/s, {side.bytes[-1]:,} bytes"
                )

    # A. full backups

    async def acci_full_backup(self, r: int) -> None:
        t0 = time.perf_counter()
        manifest = await create_backup(self.source, self.root)
        seconds = time.perf_counter() - t0
        self.fulls.append(manifest)
        self.results.side(FULL_BACKUP).add(seconds, manifest.events, manifest.bytes)

    async def pg_dump(self, r: int) -> None:
        path = self.root / f"pg_dump-{r}.dump"
        tables = [a for t in TABLES for a in ("-t", t)]
        seconds, _ = await run_tool(["pg_dump", "-Fc", *tables, "-f", str(path), self.url])
        events = await scalar(self.source, "SELECT count(*) FROM event_store.events")
        self.dumps.append(path)
        self.results.side(PG_DUMP).add(seconds, int(events), path.stat().st_size)

    # C. incremental and one-tenant backups

    async def acci_incremental(self, r: int) -> None:
        t0 = time.perf_counter()
        manifest = await create_backup(self.source, self.root, parent=self.fulls[r])
        seconds = time.perf_counter() - t0
        self.incrementals.append(manifest)
        self.results.side(INCREMENTAL).add(seconds, manifest.events, manifest.bytes)

    async def acci_tenant_backup(self, r: int) -> None:
        t0 = time.perf_counter()
        manifest = await create_backup(self.source, self.root, tenant=self.tenant)
        seconds = time.perf_counter() - t0
        self.tenant_backups.append(manifest)
        self.results.side(TENANT_BACKUP).add(seconds, manifest.events, manifest.bytes)

    def copy_files(self, r: int) -> dict[str, Path]:
        folder = self.root / f"copy-{r}"
        return {t: folder / f"{t}.bin" for t in TABLES}

    async def copy_out(self, r: int) -> None:
        files = self.copy_files(r)
        next(iter(files.values())).parent.mkdir()
        lines = ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;"]
        lines += [
            psql_line(
                "\\copy (SELECT * FROM {} WHERE tenant_id = {}) TO {} WITH (FORMAT binary)",
                sql.SQL(t),
                sql.Literal(self.tenant),
                sql.Literal(str(path)),
            )
            for t, path in files.items()
        ]
        script = self.root / f"copy-out-{r}.sql"
        script.write_text("\n".join(lines) + "\n")
        seconds, _ = await self.psql(self.url, script)
        events = await scalar(
            self.source,
            "SELECT count(*) FROM event_store.events WHERE tenant_id = %s",
            (self.tenant,),
        )
        size = sum(p.stat().st_size for p in files.values())
        self.copies.append(files[TABLES[0]].parent)
        self.results.side(COPY_OUT).add(seconds, int(events), size)

    async def psql(self, url: str, script: Path) -> tuple[float, str]:
        return await run_tool(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d", url, "-f", str(script)]
        )

    # D. full restores

    async def acci_full_restore(self, r: int) -> None:
        url = database_url(self.server_url, TARGET_ACCI)
        await fresh_target(self.server_url, TARGET_ACCI)
        full = self.fulls[r]
        async with pool_for(url) as pool:
            gc.collect()
            t0 = time.perf_counter()
            chain = load_chain(self.root, full.backup_id)
            verify_files(chain)
            t1 = time.perf_counter()
            async with pool.connection() as conn:
                async with conn.transaction():
                    await begin_writing(conn)
                    staged = await stage(conn, chain, PointInTime())
                    t2 = time.perf_counter()
                    await apply_full(conn)
                    t3 = time.perf_counter()
            t4 = time.perf_counter()
            parts = {"verify": t1 - t0, "stage": t2 - t1, "apply": t3 - t2, "commit": t4 - t3}
            self.results.side(FULL_RESTORE).add(t4 - t0, staged.events, full.bytes, parts)
            await self.compare_full(pool, full.checkpoint_position, "ACCI full restore", r)

    async def pg_restore(self, r: int) -> None:
        url = database_url(self.server_url, TARGET_PG)
        await fresh_target(self.server_url, TARGET_PG)
        dump = self.dumps[r]
        args = ["pg_restore", "--data-only", *self.pg_restore_flags, "-d", url, str(dump)]
        try:
            seconds, err = await run_tool(args)
        except RuntimeError as e:
            if self.pg_restore_flags:
                raise
            log(f"pg_restore failed ({e}); again with --disable-triggers")
            self.pg_restore_flags.append("--disable-triggers")
            self.results.notes.append(f"pg_restore needed --disable-triggers: {e}")
            await self.pg_restore(r)
            return
        if err:
            log(f"pg_restore said: {err[:500]}")
        async with pool_for(url, 1) as pool:
            events = await scalar(pool, "SELECT count(*) FROM event_store.events")
            self.results.side(PG_RESTORE).add(seconds, int(events), dump.stat().st_size)
            checkpoint = self.fulls[min(r, len(self.fulls) - 1)].checkpoint_position
            await self.compare_full(pool, checkpoint, "pg_restore", r)

    async def compare_full(
        self, target: AsyncConnectionPool, checkpoint: Position, what: str, r: int
    ) -> None:
        found = await fingerprint(target)
        expected = await fingerprint(self.source, upto=checkpoint)
        self.results.check(f"round {r + 1}: {what}: every table = the source's", found, expected)

    # E. one-tenant restores into the loaded database

    async def acci_tenant_restore(
        self, pool: AsyncConnectionPool, store: EventStore, name: str, backup_id: str
    ) -> None:
        gc.collect()
        t0 = time.perf_counter()
        chain = load_chain(self.root, backup_id)
        verify_files(chain)
        t1 = time.perf_counter()
        async with pool.connection() as conn:
            async with conn.transaction():
                await begin_writing(conn)
                staged = await stage(conn, chain, PointInTime(), tenant=self.tenant)
                t2 = time.perf_counter()
                await apply_tenant(conn, self.tenant, "bench")
                t3 = time.perf_counter()
        t4 = time.perf_counter()
        parts = {"verify": t1 - t0, "stage": t2 - t1, "apply": t3 - t2, "commit": t4 - t3}
        size = sum(m.bytes for _, m in chain)
        self.results.side(name).add(t4 - t0, staged.events, size, parts)
        gc.collect()
        t0 = time.perf_counter()
        async with pool.connection() as conn:
            async with conn.transaction():
                applied = await refresh_tenant(conn, store, self.tenant, default_projections())
        seconds = time.perf_counter() - t0
        self.results.side(REFRESH).add(seconds, max(applied.values(), default=0), 0)
        log(f"  refresh_tenant: {seconds:.2f} s, events applied {applied}")
        await self.compare_tenant(pool, name)

    async def copy_in(self, pool: AsyncConnectionPool, url: str, r: int) -> None:
        files = self.copy_files(r)
        lines = [
            psql_line(
                "SELECT pg_advisory_xact_lock_shared({}, {}), set_config('acci.event_writer',"
                " pg_backend_pid()::text || '@' || transaction_timestamp()::text, true);",
                *map(sql.Literal, WRITER_LOCK),
            )
        ]
        lines += [
            psql_line(
                "DELETE FROM {} WHERE tenant_id = {};",
                sql.SQL(table),
                sql.Literal(self.tenant),
            )
            for table in TABLES
        ]
        lines += [
            psql_line(
                "\\copy {} FROM {} WITH (FORMAT binary)",
                sql.SQL(table),
                sql.Literal(str(path)),
            )
            for table, path in files.items()
        ]
        script = self.root / f"copy-in-{r}.sql"
        script.write_text("\n".join(lines) + "\n")
        gc.collect()
        seconds, _ = await self.psql(url, script)
        events = await scalar(
            pool, "SELECT count(*) FROM event_store.events WHERE tenant_id = %s", (self.tenant,)
        )
        size = sum(p.stat().st_size for p in files.values())
        self.results.side(COPY_IN).add(seconds, int(events), size)
        await self.compare_tenant(pool, COPY_IN)

    async def compare_tenant(self, target: AsyncConnectionPool, what: str) -> None:
        found = await fingerprint(target, tenant=self.tenant)
        expected = await fingerprint(self.source, tenant=self.tenant)
        self.results.check(f"{what}: tenant {self.tenant}'s rows = the source's", found, expected)

    async def tenant_restores(self) -> None:
        url = database_url(self.server_url, TARGET_ACCI)
        async with pool_for(url, 4) as pool:
            async with pool.connection() as conn:
                await conn.execute("VACUUM ANALYZE")
            store = EventStore(pool)
            log(f"{TARGET_ACCI}: read models caught up (set-up, not timed)")
            t0 = time.perf_counter()
            shared = SharedLog(store)
            runners = [ProjectionRunner(p, store, shared_log=shared) for p in default_projections()]
            reports = await asyncio.gather(*(r.catch_up(limit=BACKLOG_BATCH) for r in runners))
            for report in reports:
                if not report.caught_up or report.failure is not None:
                    raise RuntimeError(f"catch-up of the target's read models: {report}")
            caught_up = time.perf_counter() - t0
            log(f"  caught up in {caught_up:.0f} s")
            self.results.notes.append(
                f"E's loaded database: {TARGET_ACCI} after D's last ACCI full restore, VACUUM"
                f" ANALYZE, its {len(runners)} read models caught up ({caught_up:.0f} s, not"
                " timed)."
            )

            def restore(name: str, pick: Callable[[int], str]) -> Callable[[int], Awaitable[None]]:
                async def one(r: int) -> None:
                    await self.acci_tenant_restore(pool, store, name, pick(r))

                return one

            async def copy(r: int) -> None:
                await self.copy_in(pool, url, r)

            await self.in_rounds(
                {
                    TENANT_RESTORE: restore(
                        TENANT_RESTORE, lambda r: self.tenant_backups[r].backup_id
                    ),
                    TENANT_RESTORE_ALL: restore(
                        TENANT_RESTORE_ALL, lambda r: self.incrementals[r].backup_id
                    ),
                    COPY_IN: copy,
                }
            )

    async def run(self, more: Sequence[Command]) -> None:
        log("A. full backups")
        await self.in_rounds({FULL_BACKUP: self.acci_full_backup, PG_DUMP: self.pg_dump})
        log(f"B. appending {len(more):,} more events")
        store = EventStore(self.source)
        gc.collect()
        t0 = time.perf_counter()
        last = await store_events(store, more)
        seconds = time.perf_counter() - t0
        self.results.side(APPEND).add(seconds, len(more), 0)
        log(f"  appended in {seconds:.2f} s")
        await wait_visible(store, last)
        log("C. incremental and one-tenant backups")
        await self.in_rounds(
            {
                INCREMENTAL: self.acci_incremental,
                TENANT_BACKUP: self.acci_tenant_backup,
                COPY_OUT: self.copy_out,
            }
        )
        log("D. full restores into fresh databases")
        await self.in_rounds({FULL_RESTORE: self.acci_full_restore, PG_RESTORE: self.pg_restore})
        log("E. one-tenant restores into the loaded database")
        await self.tenant_restores()


# -- the report ------------------------------------------------------------------------------------


def ratio_text(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.2f}x ({r[1]:.2f}-{r[2]:.2f})"


def verdict(text: str, met: bool) -> str:
    return f"{text}: {'PASS' if met else 'MISS'}"


# Each row: the side, what its ratio is over, and its target (the most the ratio may be).
ROWS: tuple[tuple[str, str | None, float | None], ...] = (
    (PG_DUMP, None, None),
    (FULL_BACKUP, PG_DUMP, TARGET_FULL),
    (APPEND, None, None),
    (INCREMENTAL, PG_DUMP, 1.0),
    (TENANT_BACKUP, PG_DUMP, None),
    (COPY_OUT, PG_DUMP, None),
    (PG_RESTORE, None, None),
    (FULL_RESTORE, PG_RESTORE, TARGET_FULL),
    (TENANT_RESTORE, PG_RESTORE, 1.0),
    (TENANT_RESTORE_ALL, PG_RESTORE, 1.0),
    (REFRESH, None, None),
    (COPY_IN, PG_RESTORE, None),
)
# Second comparisons: a one-tenant case over the psql \copy of the same tenant.
OVER_COPY = {TENANT_BACKUP: COPY_OUT, TENANT_RESTORE: COPY_IN, TENANT_RESTORE_ALL: COPY_IN}


def table(results: Results) -> str:
    header = ["Case", "s (median)", "events", "ev/s", "bytes", "÷ pg_dump / pg_restore"]
    header += ["÷ psql \\copy, same tenant", "Target"]
    lines = [header, ["---"] * len(header)]
    for name, over, target in ROWS:
        side = results.sides.get(name)
        if side is None:
            continue
        ratio = results.ratio(name, over) if over else None
        copy = OVER_COPY.get(name)
        size = statistics.median(side.bytes)
        lines.append(
            [
                name,
                f"{side.median:.2f}",
                f"{statistics.median(side.events):,.0f}",
                f"{side.rate:,.0f}",
                f"{size:,.0f}" if size else "-",
                ratio_text(ratio) if ratio else "-",
                ratio_text(results.ratio(name, copy)) if copy else "-",
                verdict(f"<= {target}x", ratio[0] <= target) if ratio and target else "-",
            ]
        )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def parts_text(side: Side) -> str:
    return ", ".join(f"{n} {statistics.median(s):.2f} s" for n, s in side.parts.items())


def summary(results: Results, extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "backup"}
    for name, side in results.sides.items():
        out[name] = {
            "seconds": [round(s, 3) for s in side.seconds],
            "median_s": round(side.median, 3),
            "events": side.events,
            "ev_s": round(side.rate),
            "bytes": side.bytes,
            "parts_median_s": {n: round(statistics.median(s), 3) for n, s in side.parts.items()},
        }
    out["ratios"] = {
        f"{name} / {over}": round(results.ratio(name, over)[0], 3)
        for name, over, _ in ROWS
        if over and name in results.sides
    } | {
        f"{name} / {over}": round(results.ratio(name, over)[0], 3)
        for name, over in OVER_COPY.items()
        if name in results.sides
    }
    out["checks_ok"] = len(results.checks)
    out["problems"] = results.problems
    return out | extra


# -- main ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    events: int
    tenants: int
    rounds: int
    keep: bool
    json: bool


async def load(url: str, stream: Sequence[Command]) -> dict[str, Any]:
    """The source database loaded: events, a snapshot of each tenant, VACUUM ANALYZE."""
    async with pool_for(url) as pool:
        await prepare_database(pool)
        store = EventStore(pool)
        log(f"storing {len(stream):,} events")
        last = await store_events(store, stream)
        await wait_visible(store, last)
        tenants = sorted({t for t, _, _, _ in stream})
        log(f"snapshotting {len(tenants)} tenants' Tenant aggregates")
        repository = AggregateRepository(store, SnapshotStore(pool))
        for t in tenants:
            await repository.snapshot(await repository.load(Tenant, t, t))
        log("VACUUM ANALYZE")
        async with pool.connection() as conn:
            for t in TABLES:
                await conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.SQL(t)))
        sizes = {}
        async with pool.connection() as conn:
            for t in TABLES:
                cur = await conn.execute(
                    sql.SQL(
                        "SELECT pg_total_relation_size(%s::regclass),"
                        " pg_relation_size(%s::regclass), (SELECT count(*) FROM {})"
                    ).format(sql.SQL(t)),
                    (t, t),
                )
                row = await cur.fetchone()
                assert row is not None
                sizes[t] = {
                    "total_bytes": int(row[0]),
                    "heap_bytes": int(row[1]),
                    "rows": int(row[2]),
                }
        return sizes


async def run(options: Options) -> tuple[str, dict[str, Any]]:
    server_url = os.environ.get(
        "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    url = database_url(server_url, DB)
    root = Path(tempfile.mkdtemp(prefix="acci-backup-bench-"))
    results = Results()
    try:
        t0 = time.perf_counter()
        log(f"generating {options.events:,} events for {options.tenants} tenants (+1%)")
        stream, more = generate(options.events, options.tenants)
        mix = Counter(event.event_type for _, _, _, event in stream)
        recreate_database(server_url, DB)
        sizes = await load(url, stream)
        load_seconds = time.perf_counter() - t0
        log(f"loaded in {load_seconds:.0f} s: {sizes}")
        tenant = tenant_id(options.tenants // 2)
        del stream
        gc.collect()
        t0 = time.perf_counter()
        async with pool_for(url, 4) as pool:
            bench = Bench(server_url, pool, root, tenant, options.rounds, results)
            await bench.run(more)
        run_seconds = time.perf_counter() - t0
        disk = folder_bytes(root)
    finally:
        if not options.keep:
            for name in (DB, TARGET_ACCI, TARGET_PG):
                drop_database(server_url, name)
            log(f"dropped {DB}, {TARGET_ACCI}, {TARGET_PG}")
        shutil.rmtree(root, ignore_errors=True)
        log(f"removed {root}")
    n = sum(mix.values())
    shares = ", ".join(f"{kind} {k / n:.1%}" for kind, k in mix.most_common())
    table_sizes = "; ".join(
        f"{t}: {s['rows']:,} rows, {s['total_bytes']:,} bytes with indexes"
        f" ({s['heap_bytes']:,} heap)"
        for t, s in sizes.items()
    )
    sides = results.sides
    notes = [
        f"Events: {n:,} over {options.tenants} tenants ({shares}); the one tenant: {tenant}.",
        f"Source tables after the load: {table_sizes}.",
        f"Load: {load_seconds:.0f} s (generated, appended, snapshotted, VACUUM ANALYZE)."
        f" Rounds: {options.rounds}, {run_seconds:.0f} s. Backup folder at the end:"
        f" {disk:,} bytes.",
        f"ACCI full restore, median parts: {parts_text(sides[FULL_RESTORE])}.",
        f"ACCI one-tenant restore, one-tenant chain: {parts_text(sides[TENANT_RESTORE])};"
        f" every-tenant chain: {parts_text(sides[TENANT_RESTORE_ALL])}.",
        "pg_restore flags: " + (" ".join(["--data-only", *bench.pg_restore_flags]) + "."),
        f"Checks: {len(results.checks)} passed"
        + (f"; FAILED: {'; '.join(results.problems)}" if results.problems else "")
        + ".",
        *results.notes,
    ]
    text = table(results) + "\n\n" + "\n".join(f"- {note}" for note in notes)
    extra = {
        "events": n,
        "tenants": options.tenants,
        "tenant": tenant,
        "rounds": options.rounds,
        "load_s": round(load_seconds, 1),
        "rounds_s": round(run_seconds, 1),
        "source_tables": sizes,
        "pg_restore_flags": ["--data-only", *bench.pg_restore_flags],
        "kept": options.keep,
        "mix": dict(mix.most_common()),
    }
    return text, summary(results, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events loaded (1,000,000)")
    parser.add_argument("--tenants", type=int, default=100, help="tenants (100)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (2)")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--json", action="store_true", help="only the JSON line on stdout")
    args = parser.parse_args()
    options = Options(args.events, args.tenants, args.rounds, args.keep, args.json)
    t0 = time.perf_counter()
    text, figures = asyncio.run(run(options))
    figures["total_s"] = round(time.perf_counter() - t0, 1)
    log(f"done in {figures['total_s']:.0f} s")
    print(text, file=sys.stderr if options.json else sys.stdout)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
