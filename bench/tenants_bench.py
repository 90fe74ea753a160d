"""How the event store's physical layout scales with the number of tenants (issue 9).

    .venv/bin/python bench/tenants_bench.py [--quick] [--layouts list hash16 single hybrid]
        [--tenants 10,100,1000,10000] [--parts a b] [--list-max 1000]

Why: with one LIST partition per tenant, a global ``read_all`` page plans and locks every
partition, so it fell to 0.11x its 10-tenant speed at 1,000 tenants and 0.005x at 5,000 ("out of
shared memory" on a default server). The new layout is chosen by these figures. Issue 9's
targets, at 10,000 tenants against 10: ``read_all`` >= 0.8x and appends >= 0.8x.

Part A compares candidate layouts with raw SQL. For each layout, every tenant count T gets a
fresh database ``acci_bench_tenants_<layout>_<T>`` with the layout in its own schema, with the
columns and keys of the seed's ``event_store.events`` (migrations 001 and 007; no writer-lock
trigger):

- ``list``: one LIST partition per tenant plus a DEFAULT (the layout before migration 008),
  created with ``CREATE TABLE ... PARTITION OF``; not run above ``--list-max`` tenants (1,000).
- ``hash16``: 16 HASH partitions on tenant_id.
- ``single``: one table; the primary key (tenant_id, event_id), the stream key (tenant_id,
  aggregate_id, aggregate_type, sequence_number) and the global order (transaction_id,
  global_position) are its indexes.
- ``hybrid``: LIST partitions for the 8 largest tenants plus a DEFAULT for the rest. For this
  layout only, the 8 largest tenants hold half of the events (the rest share the other half);
  the other layouts spread the events evenly.

E events (200,000; --quick 50,000; ``UserRegistered`` rows of ~100 bytes of JSON, streams of 10
events) are loaded with server-side ``INSERT ... SELECT generate_series`` in transactions of
5,000 rows, then ``VACUUM ANALYZE`` (a table in steady state is vacuumed). Measured:

1. ``read_all``: every event, from the start, in pages of 1,000 in global order, each page its
   own autocommit transaction, with the query shape of ``eventstore/store.py`` (by_tenant=False,
   by_type=False) but the simple horizon
   ``transaction_id < pg_snapshot_xmin(pg_current_snapshot())`` instead of the writer-lock one;
   a psycopg statement, prepared by psycopg after 5 runs as in ACCI, rows decoded by psycopg
   (JSON parsed). Ten pages warm each connection first. The figure is 1,000 events over the
   median page's seconds: every page of a pass does the same work, and the median leaves out
   the pages the rest of the machine stalled. Then, for one page from the middle: the planning
   and execution time (``EXPLAIN (ANALYZE, SUMMARY)``, the least of 5) and the locks the page
   leaves in ``pg_locks`` for its backend inside its transaction (the prepared statement, minus
   what the count itself holds).
2. 8 concurrent writers, each appending single events to random tenants' existing streams for 4
   s (--quick 2 s), with the statement of ``eventstore/append.py``'s ``_INSERT`` as it was for
   the LIST layout (head CTE, then the insert; without the commands row). ``list`` inserts
   straight into the tenant's partition, as ACCI did; the others into the table. The bench
   databases run with ``synchronous_commit = off``: a commit's WAL flush costs the same whatever
   the layout, and on this shared disk it is mostly noise (8 writers made ~1,000 appends/s with
   it in every layout); without it, the appends measure what the layout adds (planning, locks,
   index upkeep).
3. A new tenant: the DDL it needs (``list``: its partition) plus its first event; the other
   layouts need no DDL, so this is the first event alone. Median of 3 tenants.
4. One tenant exported (``COPY (SELECT ...) TO STDOUT``, read to the end) and deleted
   (``list``: ``DROP TABLE`` of its partition; the others, and ``hybrid``'s small tenants:
   ``DELETE``). Median of the 2 last tenants (the smallest; ``hybrid``'s at T=10 hold 2.5x
   more events than the others').
5. Size: ``pg_total_relation_size`` over the layout's tables, indexes and TOAST, per event.

Part B runs ACCI itself on whatever layout the migrations of the checkout give: with LIST
partitions per tenant (before migration 008), T is capped at ``--list-max``. For each T, a
fresh database ``acci_bench_tenants_store_<T>``, ``migrate(pool)``, then the load: each tenant's
first event through ``EventStore.append_many`` (one append per tenant, 1,000 per call: with
LIST partitions this creates them), then 10,000 more (--quick 5,000) through ``append_many``
(timed: ev/s), and the rest with raw ``INSERT ... SELECT generate_series`` into
``event_store.events``, 5,000 rows a statement (timed). Measured: ``store.read_all`` (pages of
1,000: rows, upcast, ``RecordedEvent``s, the writer-lock horizon) beside the raw page read of
part A on the same table, and 8 writers through ``store.append`` (one event, a new command
each: the commands row too) beside 8 writers running part A's raw insert on the same table,
each slice's two sides back to back (who goes first alternates); with LIST partitions the raw
insert runs unprepared (a generic plan through the parent locks every partition: 8 writers at
1,000 tenants filled the server's lock table). A pool lives for one step
(with LIST partitions, its new store first appends one event per tenant, untimed, to learn
their partitions as a long-running process has). To measure the layout before 008, run this
file from an export of that commit (``git archive 1a773b2 | tar -x -C /tmp/acci_before``)
with ``PYTHONPATH=/tmp/acci_before``.

Every figure is also shown as a ratio against the same layout (part B: the same side) at the
smallest T of the run (10 by default). All the tenant counts of a layout are built first and
measured together, so the drift of this shared, noisy machine falls on all of them alike: the
read passes take turns page by page (part B: ACCI's and raw's too), and each write run is cut
in 4 slices, every tenant count taking its slice in turn (the ratio is the median of the
slices' ratios). Read the ratios, and the absolute figures as this run's only. A read pass is
bounded by the client (psycopg decoding ~1,000 rows of JSON per page): the planning, execution
and lock columns show what the server does per page. Progress goes to stderr, the tables to
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import psycopg
from harness import database_url, recreate_database
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from acci.eventstore.db import XID8_OID, Xid8Loader, create_pool
from acci.eventstore.errors import ConcurrencyError, EventStoreError
from acci.eventstore.records import NO_STREAM, START, NewEvent, Position, StreamAppend
from acci.eventstore.store import EventStore
from acci.readmodels.schema import prepare_database

SERVER_URL: Final = os.environ.get(
    "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_PREFIX: Final = "acci_bench_tenants"
LAYOUTS: Final = ("list", "hash16", "single", "hybrid")
TENANT_COUNTS: Final = (10, 100, 1_000, 10_000)
PAGE: Final = 1_000
WARM_PAGES: Final = 10
WRITERS: Final = 8
WRITE_SLICES: Final = 4  # a write run is cut in slices, each tenant count's taken in turn
NEW_TENANTS: Final = 9  # tenants created for the "new tenant" figure (median)
LOAD_BATCH: Final = 5_000  # rows per load transaction
DDL_BATCH: Final = 100  # partitions created per transaction (a lock each, and their indexes')
STREAM_EVENTS: Final = 10  # events per loaded stream
BIG_TENANTS: Final = 8  # hybrid: tenants with their own partition, holding half of the events
HASH_PARTITIONS: Final = 16
EVENT_TYPE: Final = "UserRegistered"  # registered, current version 2: the store reads it back
EVENT_VERSION: Final = 2
AGGREGATE_TYPE: Final = "User"
TARGET: Final = 0.8  # issue 9: at 10,000 tenants, >= 0.8x the 10-tenant figure
TARGET_TENANTS: Final = 10_000
READABLE_WAIT: Final = 120.0  # seconds a read waits for older transactions elsewhere to end


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; --quick shrinks everything."""

    events: int  # E, loaded per layout and T
    write_seconds: float  # each 8-writer run (per side), in WRITE_SLICES slices
    api_events: int  # part B: events loaded through append_many after each tenant's first

    @classmethod
    def for_run(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(50_000, 2.0, 5_000)
        return cls(200_000, 4.0, 10_000)


def tenant_name(n: int) -> str:
    return f"t{n:05d}"


def event_data(n: int) -> dict[str, Any]:
    """A valid ``UserRegistered`` v2 payload, ~100 bytes of JSON."""
    return {
        "email": f"user{n}@example.com",
        "display_name": f"Benchmark user number {n:010d}",
        "roles": ["member"],
    }


# -- SQL shared by both parts ----------------------------------------------------------------

# event_store.events before migration 008 (001, stream key of 007), without the writer trigger.
_COLUMNS_DDL: Final = """
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id uuid NOT NULL,
    tenant_id text NOT NULL,
    aggregate_id text NOT NULL,
    aggregate_type text NOT NULL,
    sequence_number bigint NOT NULL CHECK (sequence_number > 0),
    event_type text NOT NULL,
    event_version integer NOT NULL CHECK (event_version > 0),
    data jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    command_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1 CHECK (version > 0),
    CONSTRAINT events_pkey PRIMARY KEY (tenant_id, event_id),
    CONSTRAINT events_stream_key UNIQUE (tenant_id, aggregate_id, aggregate_type, sequence_number)
"""

# Event g of the load: evenly, tenant g mod T and its (g div T)-th event; skewed (hybrid), even
# g go to the 8 big tenants and odd g to the others. Streams 'u<k div 10>' of 10 events each.
_LOAD: Final = """
INSERT INTO {table} (event_id, tenant_id, aggregate_id, aggregate_type, sequence_number,
                     event_type, event_version, data, command_id)
SELECT gen_random_uuid(), 't' || lpad(s.tenant::text, 5, '0'), {prefix} || (s.k / {stream}),
       {aggregate_type}, mod(s.k, {stream}) + 1, {event_type}, {event_version},
       jsonb_build_object('email', 'user' || g || '@example.com',
                          'display_name', 'Benchmark user number ' || lpad(g::text, 10, '0'),
                          'roles', jsonb_build_array('member')),
       md5(g::text)::uuid
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT CASE WHEN NOT %(skewed)s THEN mod(g, %(tenants)s)
                            WHEN mod(g, 2) = 0 THEN mod(g / 2, {big})
                            ELSE {big} + mod(g / 2, %(tenants)s - {big}) END AS tenant,
                       CASE WHEN NOT %(skewed)s THEN g / %(tenants)s
                            WHEN mod(g, 2) = 0 THEN (g / 2) / {big}
                            ELSE (g / 2) / (%(tenants)s - {big}) END AS k) AS s
"""

# eventstore/store.py's read_all (by_tenant=False, by_type=False), RecordedEvent's columns, with
# the simple horizon: every transaction still open anywhere holds it back.
_READ_PAGE: Final = """
SELECT event_id, tenant_id, aggregate_id, aggregate_type, sequence_number, event_type,
       event_version, data, metadata, command_id, created_at, global_position, transaction_id
  FROM {table}
 WHERE (transaction_id, global_position) > (%s::text::xid8, %s)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY transaction_id, global_position LIMIT %s
"""

# eventstore/append.py's _INSERT (as of the LIST layout) for one event, without the commands row.
_APPEND: Final = """
WITH head AS (
    SELECT sequence_number FROM {target}
     WHERE tenant_id = %(tenant_id)s AND aggregate_id = %(aggregate_id)s
       AND aggregate_type = %(aggregate_type)s
     ORDER BY sequence_number DESC LIMIT 1
), stream AS (
    SELECT coalesce((SELECT sequence_number FROM head), 0) AS version
)
INSERT INTO {target} ({position_column}event_id, tenant_id, aggregate_id, aggregate_type,
                      sequence_number, event_type, event_version, data, metadata, command_id)
SELECT {position_value}%(event_id)s, %(tenant_id)s, %(aggregate_id)s, %(aggregate_type)s,
       s.version + 1, %(event_type)s, %(event_version)s, %(data)s, '{{}}'::jsonb, %(command_id)s
  FROM stream s
RETURNING event_id, sequence_number, global_position, transaction_id
"""

_LOCKS: Final = "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"


def load_query(table: sql.Composable, stream_prefix: str) -> str:
    return (
        sql.SQL(_LOAD)
        .format(
            table=table,
            prefix=sql.Literal(stream_prefix),
            stream=sql.Literal(STREAM_EVENTS),
            aggregate_type=sql.Literal(AGGREGATE_TYPE),
            event_type=sql.Literal(EVENT_TYPE),
            event_version=sql.Literal(EVENT_VERSION),
            big=sql.Literal(BIG_TENANTS),
        )
        .as_string(None)
    )


def read_query(table: sql.Composable) -> str:
    return sql.SQL(_READ_PAGE).format(table=table).as_string(None)


def append_query(target: sql.Composable, sequence: str | None = None) -> str:
    """The raw append into ``target``; with ``sequence``, the position is taken from it
    explicitly (a partition does not inherit its parent's identity)."""
    return (
        sql.SQL(_APPEND)
        .format(
            target=target,
            position_column=sql.SQL("global_position, " if sequence else ""),
            position_value=sql.SQL("nextval({}), ").format(sql.Literal(sequence))
            if sequence
            else sql.SQL(""),
        )
        .as_string(None)
    )


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection that loads xid8 as int, as ACCI's pool does."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    conn.adapters.register_loader(XID8_OID, Xid8Loader)
    return conn


async def load(
    conn: psycopg.AsyncConnection[Any],
    query: str,
    *,
    first: int,
    last: int,
    tenants: int,
    skewed: bool = False,
) -> float:
    """Events ``first`` to ``last`` (inclusive) in transactions of LOAD_BATCH; the seconds."""
    t0 = time.perf_counter()
    for lo in range(first, last + 1, LOAD_BATCH):
        hi = min(lo + LOAD_BATCH - 1, last)
        params = {"first": lo, "last": hi, "tenants": tenants, "skewed": skewed}
        await conn.execute(query, params)
    return time.perf_counter() - t0


# -- reading and writing, as both parts measure them -----------------------------------------

Page = Callable[[Position], Awaitable[Sequence[Any]]]


class PageReader:
    """Reads the whole log from the start, page by page, timing its own pages only.

    Several readers take turns a page at a time (``read_interleaved``): each tenant count (and
    side) is read in the same seconds as the others, so the drift of a shared machine falls on
    all of them alike and their ratios keep.
    """

    def __init__(self, page: Page, position_of: Callable[[Any], Position]) -> None:
        self._page = page
        self._position_of = position_of
        self.position = START
        self.positions = [START]
        self.events = 0
        self.times: list[float] = []  # seconds per full page
        self.done = False
        self.error: Exception | None = None

    @property
    def rate(self) -> float:
        """Events per second at the median full page's speed."""
        return PAGE / statistics.median(self.times) if self.times else 0.0

    @property
    def middle(self) -> Position:
        """Where the middle page starts."""
        return self.positions[len(self.positions) // 2]

    async def warm(self) -> None:
        """The first pages, untimed: the backend's caches, psycopg's prepared statement."""
        position = START
        for _ in range(WARM_PAGES):
            rows = await self._read(position)
            if not rows:
                return
            position = self._position_of(rows[-1])

    async def step(self) -> None:
        t0 = time.perf_counter()
        rows = await self._read(self.position)
        if len(rows) == PAGE:
            self.times.append(time.perf_counter() - t0)
        if not rows:
            self.done = True
            return
        self.events += len(rows)
        self.position = self._position_of(rows[-1])
        self.positions.append(self.position)

    async def _read(self, position: Position) -> Sequence[Any]:
        try:
            return await self._page(position)
        except (psycopg.Error, EventStoreError) as e:  # "out of shared memory" is a result
            self.error, self.done = e, True
            return []


async def read_interleaved(readers: Sequence[PageReader]) -> None:
    for reader in readers:
        await reader.warm()
    active = [r for r in readers if not r.done]
    while active:
        for reader in active:
            await reader.step()
        active = [r for r in active if not r.done]


_READABLE: Final = (
    "SELECT coalesce(max(transaction_id) < pg_snapshot_xmin(pg_current_snapshot()), true) FROM {}"
)


async def wait_readable(conn: psycopg.AsyncConnection[Any], table: sql.Composable) -> None:
    """Wait until the simple horizon is past every stored event.

    The horizon is cluster-wide: a transaction begun before the load, in any database (this
    machine is shared), would otherwise cut the pass short.
    """
    query = sql.SQL(_READABLE).format(table)
    t0 = time.perf_counter()
    while True:
        cur = await conn.execute(query)
        row = await cur.fetchone()
        if row is not None and row[0]:
            break
        if time.perf_counter() - t0 > READABLE_WAIT:
            log(f"  still held back after {READABLE_WAIT:.0f} s: reading what is readable")
            break
        await asyncio.sleep(0.2)
    if time.perf_counter() - t0 > 1:
        log(f"  waited {time.perf_counter() - t0:.1f} s for an older transaction elsewhere")


def raw_page(conn: psycopg.AsyncConnection[Any], query: str) -> Page:
    async def page(after: Position) -> Sequence[Any]:
        cur = await conn.execute(query, (str(after.transaction_id), after.global_position, PAGE))
        return await cur.fetchall()

    return page


def raw_position(row: Any) -> Position:
    return Position(int(row[12]), int(row[11]))


def store_page(store: EventStore) -> Page:
    async def page(after: Position) -> Sequence[Any]:
        return await store.read_all(after, limit=PAGE)

    return page


def store_position(event: Any) -> Position:
    return Position(event.transaction_id, event.global_position)


@dataclass(frozen=True)
class Streams:
    """Which existing streams the writers append to: ``count`` streams of every tenant."""

    tenants: int
    count: int

    def pick(self, rng: random.Random) -> tuple[int, str]:
        return rng.randrange(self.tenants), f"u{rng.randrange(self.count)}"


# (writer, tenant, stream, the writer's random numbers)
Append = Callable[[int, int, str, random.Random], Awaitable[None]]


async def run_writers(append: Append, streams: Streams, seconds: float, *, seed: int) -> float:
    """WRITERS tasks appending one event at a time for ``seconds``; events per second.

    Two writers racing for one stream collide on the stream key; the loser's append is dropped
    (not counted), as rare as streams are many.
    """
    done = [0] * WRITERS
    lost = [0] * WRITERS
    deadline = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        rng = random.Random(seed * WRITERS + w)
        while time.perf_counter() < deadline:
            tenant, stream = streams.pick(rng)
            try:
                await append(w, tenant, stream, rng)
                done[w] += 1
            except (psycopg.errors.UniqueViolation, ConcurrencyError):
                lost[w] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    elapsed = time.perf_counter() - t0
    if sum(lost):
        log(f"  {sum(lost)} appends lost a race for a stream (not counted)")
    return sum(done) / elapsed


def raw_append(
    conns: Sequence[psycopg.AsyncConnection[Any]],
    query_for: Callable[[str], str],
    *,
    prepare: bool | None = None,
) -> Append:
    """The raw single-event append, on the writer's own connection (``prepare``: psycopg's)."""

    async def append(writer: int, tenant: int, stream: str, rng: random.Random) -> None:
        conn = conns[writer]
        name = tenant_name(tenant)
        n = rng.randrange(1_000_000_000)
        params = {
            "event_id": uuid.uuid4(),
            "tenant_id": name,
            "aggregate_id": stream,
            "aggregate_type": AGGREGATE_TYPE,
            "event_type": EVENT_TYPE,
            "event_version": EVENT_VERSION,
            "data": Jsonb(event_data(n)),
            "command_id": uuid.uuid4(),
        }
        cur = await conn.execute(query_for(name), params, prepare=prepare)
        await cur.fetchall()

    return append


def store_append(store: EventStore) -> Append:
    async def append(_writer: int, tenant: int, stream: str, rng: random.Random) -> None:
        event = NewEvent(EVENT_TYPE, EVENT_VERSION, event_data(rng.randrange(1_000_000_000)))
        await store.append(
            tenant_name(tenant), stream, AGGREGATE_TYPE, [event], command_id=uuid.uuid4()
        )

    return append


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One layout at one tenant count: each figure's samples (one per turn, or one), and the
    text standing in for a figure that could not be measured."""

    layout: str
    tenants: int
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def figure(self, key: str) -> float | None:
        values = self.samples.get(key)
        return statistics.median(values) if values else None

    def ratio(self, base: Row, key: str) -> float | None:
        """This row's figure over the base row's: the median of the turns' ratios when both
        have turns (each turn measures every tenant count back to back, see ``in_turns``)."""
        mine, theirs = self.samples.get(key), base.samples.get(key)
        if not mine or not theirs or key in self.notes or key in base.notes:
            return None
        if len(mine) == len(theirs):
            return statistics.median(a / b for a, b in zip(mine, theirs, strict=True) if b)
        first = statistics.median(theirs)
        return statistics.median(mine) / first if first else None


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    unit: str  # "ev/s", "ms", "B", "" (a count) or "x" (a ratio, shown as is)


def cell(row: Row, base: Row | None, column: Column) -> str:
    if column.key in row.notes:
        return row.notes[column.key]
    value = row.figure(column.key)
    if value is None:
        return "-"
    if column.unit == "x":
        return f"{value:.2f}x"
    digits = 2 if column.unit == "ms" and value < 10 else 0
    text = f"{value:,.{digits}f}" + (f" {column.unit}" if column.unit else "")
    ratio = None if base is None else row.ratio(base, column.key)
    return text if ratio is None else f"{text} ({ratio:.2f}x)"


def targets(row: Row, base: Row | None, keys: Sequence[tuple[str, str]]) -> str:
    """Issue 9's targets, checked on the 10,000-tenant rows only."""
    if row.tenants != TARGET_TENANTS or base is None or base is row:
        return "-"
    checks = []
    for key, label in keys:
        ratio = row.ratio(base, key)
        verdict = "PASS" if ratio is not None and ratio >= TARGET else "MISS"
        checks.append(f"{label} >= {TARGET}x: {verdict}")
    return "; ".join(checks)


def markdown(
    rows: Sequence[Row], columns: Sequence[Column], target_keys: Sequence[tuple[str, str]]
) -> str:
    header = ["layout", "tenants", *(c.title for c in columns), "target (10,000 tenants)"]
    lines = [header, ["---"] * len(header)]
    for row in rows:
        if row.skipped is not None:
            lines.append([row.layout, f"{row.tenants:,}", row.skipped] + [""] * len(columns))
            continue
        base = next((r for r in rows if r.layout == row.layout and r.skipped is None), None)
        figures = [cell(row, base, c) for c in columns]
        lines.append([row.layout, f"{row.tenants:,}", *figures, targets(row, base, target_keys)])
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


PART_A_COLUMNS: Final = (
    Column("read", "read_all, pages of 1,000", "ev/s"),
    Column("plan", "planning / page", "ms"),
    Column("exec", "execution / page", "ms"),
    Column("locks", "locks / page", ""),
    Column("write", "8 writers, 1-event appends", "ev/s"),
    Column("create", "new tenant (DDL + 1st event)", "ms"),
    Column("export", "export 1 tenant", "ms"),
    Column("delete", "delete 1 tenant", "ms"),
    Column("size", "size / event", "B"),
)
PART_B_COLUMNS: Final = (
    Column("first", "1st event per tenant (append_many)", "ms"),
    Column("api_load", "load via append_many", "ev/s"),
    Column("raw_load", "load via INSERT ... SELECT", "ev/s"),
    Column("read", "store.read_all", "ev/s"),
    Column("raw_read", "raw page read", "ev/s"),
    Column("read_vs_raw", "read ACCI/raw", "x"),
    Column("write", "8 writers, store.append", "ev/s"),
    Column("raw_write", "8 writers, raw INSERT", "ev/s"),
    Column("write_vs_raw", "append ACCI/raw", "x"),
)


def shared_memory(e: BaseException) -> str:
    """A cell for an error that ends a measurement: "out of shared memory" is a result."""
    if isinstance(e, psycopg.errors.OutOfMemory) or isinstance(
        e.__cause__, psycopg.errors.OutOfMemory
    ):
        return "out of shared memory"
    return f"failed: {type(e).__name__}"


# The columns a step fills in, where they are not named as the step is.
_STEP_COLUMNS: Final = {
    "page_cost": ("plan", "exec", "locks"),
    "export": ("export", "delete"),
    "read": ("read", "raw_read", "read_vs_raw"),
}


def capped(tenants: int, list_max: int) -> str:
    return f"not run ({tenants:,} > --list-max {list_max:,}: one LIST partition per tenant)"


class Measured:
    """What a run at one tenant count shares: its database, its row, and the error handling."""

    def __init__(self, db: str, row: Row) -> None:
        self.db = db
        self.url = database_url(SERVER_URL, db)
        self.row = row

    async def measure(self, key: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run one measurement; an error becomes the figure (all of this run's, if building)."""
        if self.row.skipped is not None:
            return
        log(f"{self.row.layout}, {self.row.tenants:,} tenants: {key}")
        try:
            await step()
        except (psycopg.Error, EventStoreError) as e:
            self.failed(key, e)

    def failed(self, key: str, e: Exception) -> None:
        log(f"  {key} failed: {e}")
        if key == "build":
            self.row.skipped = shared_memory(e)
        for column in _STEP_COLUMNS.get(key, (key,)):
            self.row.notes[column] = shared_memory(e)


async def in_turns(runs: Sequence[Measured], turns: int, name: str) -> None:
    """Each turn runs the step ``name`` (told the turn) for every tenant count back to back,
    starting with another one each time: turn k's figures pair up, and the machine's drift
    cancels out of their ratios."""
    for turn in range(turns):
        shift = turn % len(runs) if runs else 0
        for run in [*runs[shift:], *runs[:shift]]:
            await run.measure(name, partial(getattr(run, name), turn))


# -- part A: candidate layouts ---------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A layout in its own schema: how its table is built and where its events go."""

    name: str
    tenants: int

    @property
    def schema(self) -> str:
        return f"layout_{self.name}"

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(self.schema, "events")

    @property
    def skewed(self) -> bool:
        return self.name == "hybrid"

    def own_partitions(self) -> list[int]:
        """The tenants with a LIST partition of their own."""
        if self.name == "list":
            return list(range(self.tenants))
        if self.name == "hybrid":
            return list(range(BIG_TENANTS))
        return []

    def partition(self, tenant: int) -> sql.Identifier:
        return sql.Identifier(self.schema, f"events_{tenant_name(tenant)}")

    def small_tenants(self) -> list[int]:
        """Tenants of the smallest size, the last ones (hybrid: in the DEFAULT partition)."""
        return [self.tenants - 1, self.tenants - 2]

    def streams(self, events: int) -> Streams:
        smallest = (
            events // 2 // (self.tenants - BIG_TENANTS) if self.skewed else events // self.tenants
        )
        return Streams(self.tenants, max(1, min(1_000, smallest // STREAM_EVENTS)))


async def create_layout(conn: psycopg.AsyncConnection[Any], layout: Candidate) -> None:
    partitioning = {
        "list": "PARTITION BY LIST (tenant_id)",
        "hybrid": "PARTITION BY LIST (tenant_id)",
        "hash16": "PARTITION BY HASH (tenant_id)",
    }.get(layout.name, "")
    table = layout.table
    await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(layout.schema)))
    await conn.execute(
        sql.SQL("CREATE TABLE {} ({}) {}").format(
            table, sql.SQL(_COLUMNS_DDL), sql.SQL(partitioning)
        )
    )
    await conn.execute(
        sql.SQL("CREATE INDEX events_global_order ON {} (transaction_id, global_position)").format(
            table
        )
    )
    if layout.name in ("list", "hybrid"):
        await conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} DEFAULT").format(
                sql.Identifier(layout.schema, "events_default"), table
            )
        )
    if layout.name == "hash16":
        for r in range(HASH_PARTITIONS):
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {})"
                ).format(
                    sql.Identifier(layout.schema, f"events_h{r:02d}"),
                    table,
                    sql.Literal(HASH_PARTITIONS),
                    sql.Literal(r),
                )
            )
    own = layout.own_partitions()
    for start in range(0, len(own), DDL_BATCH):
        async with conn.transaction():
            for tenant in own[start : start + DDL_BATCH]:
                await conn.execute(create_partition(layout, tenant))


def create_partition(layout: Candidate, tenant: int) -> sql.Composed:
    return sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({})").format(
        layout.partition(tenant), layout.table, sql.Literal(tenant_name(tenant))
    )


class LayoutRun(Measured):
    """One candidate layout at one tenant count, in its own fresh database."""

    def __init__(self, layout: Candidate, sizes: Sizes) -> None:
        row = Row(layout.name, layout.tenants)
        super().__init__(f"{DB_PREFIX}_{layout.name}_{layout.tenants}", row)
        self.layout = layout
        self.sizes = sizes
        self.middle = START  # where the read pass's middle page starts

    async def build(self, _turn: int) -> None:
        layout, events = self.layout, self.sizes.events
        fresh_database(self.db)
        async with await connect(self.url) as conn:
            t0 = time.perf_counter()
            await create_layout(conn, layout)
            log(f"  layout created in {time.perf_counter() - t0:.1f} s")
            query = load_query(layout.table, "u")
            seconds = await load(
                conn, query, first=0, last=events - 1, tenants=layout.tenants, skewed=layout.skewed
            )
            log(f"  {events:,} events loaded in {seconds:.1f} s")
            await conn.execute(sql.SQL("VACUUM ANALYZE {}").format(layout.table))
            # Every table of the layout's schema, with its indexes and TOAST.
            cur = await conn.execute(
                "SELECT sum(pg_total_relation_size(oid)) FROM pg_class"
                " WHERE relnamespace = %s::regnamespace AND relkind = 'r'",
                (layout.schema,),
            )
            row = await cur.fetchone()
            self.row.add("size", float(row[0]) / events if row else 0.0)

    async def write(self, turn: int) -> None:
        """One slice of the 8-writer run."""
        layout = self.layout
        if layout.name == "list":  # straight into the tenant's partition, as ACCI did
            sequence = f"{layout.schema}.events_global_position_seq"
            queries = {
                tenant_name(t): append_query(layout.partition(t), sequence)
                for t in range(layout.tenants)
            }
            query_for: Callable[[str], str] = queries.__getitem__
        else:
            query = append_query(layout.table)
            query_for = lambda _tenant: query  # noqa: E731
        conns = [await connect(self.url) for _ in range(WRITERS)]
        try:
            rate = await run_writers(
                raw_append(conns, query_for),
                layout.streams(self.sizes.events),
                self.sizes.write_seconds / WRITE_SLICES,
                seed=turn,
            )
            self.row.add("write", rate)
        finally:
            for conn in conns:
                await conn.close()

    async def page_cost(self, _turn: int) -> None:
        """Planning, execution and locks of the middle page, once the statement is prepared."""
        query = read_query(self.layout.table)
        async with await connect(self.url) as conn:
            page = raw_page(conn, query)
            for _ in range(WARM_PAGES):  # psycopg prepares it after 5 runs
                await page(self.middle)
            plan, execution = await explain(conn, query, self.middle)
            self.row.add("plan", plan)
            self.row.add("exec", execution)
            self.row.add("locks", float(await page_locks(conn, page, self.middle)))

    async def create(self, _turn: int) -> None:
        """DDL (list only) plus a first event, for new tenants numbered past the others."""
        layout, times = self.layout, []
        insert = append_query(layout.table)
        rng = random.Random(0)
        async with await connect(self.url) as conn:
            for n in range(NEW_TENANTS):
                tenant = layout.tenants + n
                t0 = time.perf_counter()
                if layout.name == "list":
                    await conn.execute(create_partition(layout, tenant))
                await raw_append([conn], lambda _t: insert)(0, tenant, "u0", rng)
                times.append(time.perf_counter() - t0)
        self.row.add("create", statistics.median(times) * 1_000)

    async def export(self, _turn: int) -> None:
        """Export, then delete, the smallest tenants (both figures are this step's)."""
        layout, exports, deletes = self.layout, [], []
        async with await connect(self.url) as conn:
            for tenant in layout.small_tenants():
                name = tenant_name(tenant)
                t0 = time.perf_counter()
                await export_tenant(conn, layout.table, name)
                exports.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                if layout.name == "list":
                    await conn.execute(sql.SQL("DROP TABLE {}").format(layout.partition(tenant)))
                else:
                    await conn.execute(
                        sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(layout.table),
                        (name,),
                    )
                deletes.append(time.perf_counter() - t0)
        self.row.add("export", statistics.median(exports) * 1_000)
        self.row.add("delete", statistics.median(deletes) * 1_000)


async def read_layouts(runs: Sequence[LayoutRun]) -> None:
    """Every tenant count's read pass, page-interleaved."""
    conns = [await connect(run.url) for run in runs]
    try:
        readers = []
        for run, conn in zip(runs, conns, strict=True):
            await wait_readable(conn, run.layout.table)
            readers.append(PageReader(raw_page(conn, read_query(run.layout.table)), raw_position))
        log(f"{runs[0].row.layout}: read, {len(runs)} tenant counts page by page")
        await read_interleaved(readers)
        for run, reader in zip(runs, readers, strict=True):
            if reader.error is not None:
                run.failed("read", reader.error)
                continue
            run.row.add("read", reader.rate)
            run.middle = reader.middle
            if reader.events < run.sizes.events:
                log(f"  {run.row.tenants}: only {reader.events:,} events read (older transaction)")
    finally:
        for conn in conns:
            await conn.close()


async def export_tenant(
    conn: psycopg.AsyncConnection[Any], table: sql.Composable, tenant: str
) -> int:
    """COPY one tenant's rows out, read to the end; the bytes read."""
    total = 0
    query = sql.SQL("COPY (SELECT * FROM {} WHERE tenant_id = {}) TO STDOUT").format(
        table, sql.Literal(tenant)
    )
    async with conn.cursor() as cur, cur.copy(query) as copy:
        async for data in copy:
            total += len(data)
    return total


async def explain(
    conn: psycopg.AsyncConnection[Any], query: str, after: Position
) -> tuple[float, float]:
    """Planning and execution ms of one page, from EXPLAIN ANALYZE: the least of 5 (the one
    least disturbed by the rest of the machine)."""
    plans, runs = [], []
    for _ in range(5):
        cur = await conn.execute(
            "EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) " + query,
            (str(after.transaction_id), after.global_position, PAGE),
            prepare=False,
        )
        row = await cur.fetchone()
        assert row is not None
        summary = row[0][0] if isinstance(row[0], list) else json.loads(row[0])[0]
        plans.append(float(summary["Planning Time"]))
        runs.append(float(summary["Execution Time"]))
    return min(plans), min(runs)


async def page_locks(conn: psycopg.AsyncConnection[Any], page: Page, after: Position) -> int:
    """Locks one page holds in its transaction (the count's own locks subtracted)."""
    await conn.set_autocommit(False)
    try:
        cur = await conn.execute(_LOCKS)
        row = await cur.fetchone()
        baseline = int(row[0]) if row else 0
        await conn.rollback()
        await page(after)
        cur = await conn.execute(_LOCKS)
        row = await cur.fetchone()
        await conn.rollback()
        return (int(row[0]) if row else 0) - baseline
    finally:
        await conn.set_autocommit(True)


async def part_a(
    sizes: Sizes, layouts: Sequence[str], counts: Sequence[int], list_max: int
) -> list[Row]:
    rows = []
    for name in layouts:
        runs = []
        for tenants in counts:
            if name == "list" and tenants > list_max:
                rows.append(Row(name, tenants, skipped=capped(tenants, list_max)))
            else:
                runs.append(LayoutRun(Candidate(name, tenants), sizes))
                rows.append(runs[-1].row)
        try:
            await in_turns(runs, 1, "build")
            live = [run for run in runs if run.row.skipped is None]
            if live:
                await read_layouts(live)
            await in_turns(live, WRITE_SLICES, "write")
            # Last: the new tenants and the deletes change the data.
            for step in ("page_cost", "create", "export"):
                await in_turns(live, 1, step)
        finally:
            for run in runs:
                drop_database(run.db)
    return rows


def fresh_database(name: str) -> None:
    """An empty database whose sessions commit without waiting for the WAL flush.

    A commit's flush costs the same whatever the layout, and on this shared disk it is mostly
    noise: without it, the appends measure what the layout adds (planning, locks, index upkeep).
    Both parts, every side.
    """
    recreate_database(SERVER_URL, name)
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name))
        )


def drop_database(name: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# -- part B: the store -----------------------------------------------------------------------

_LAYOUT: Final = """
SELECT p.partstrat
  FROM pg_class c LEFT JOIN pg_partitioned_table p ON p.partrelid = c.oid
 WHERE c.oid = 'event_store.events'::regclass
"""

_STORE_TABLE: Final = sql.Identifier("event_store", "events")


class StoreRun(Measured):
    """ACCI's store, on the layout its migrations give, at one tenant count.

    A pool (and a store) lives for one step only: four tenant counts' pools open at once would
    take too many of the shared server's connections.
    """

    def __init__(self, tenants: int, sizes: Sizes, list_max: int) -> None:
        super().__init__(f"{DB_PREFIX}_store_{tenants}", Row("store", tenants))
        self.tenants = tenants
        self.sizes = sizes
        self.list_max = list_max
        self.per_tenant_partitions = False

    def pool(self, size: int) -> AsyncConnectionPool:
        return create_pool(self.url, min_size=size, max_size=size)

    async def build(self, _turn: int) -> None:
        fresh_database(self.db)
        async with self.pool(2) as pool, await connect(self.url) as conn:
            await prepare_database(pool)
            cur = await conn.execute(_LAYOUT)
            row = await cur.fetchone()
            strategy = None if row is None else row[0]
            kind = {"l": "LIST", "h": "HASH", "r": "RANGE"}.get(strategy or "", strategy)
            self.row.layout = "store: one table" if kind is None else f"store: {kind} partitions"
            self.per_tenant_partitions = kind == "LIST"
            if self.per_tenant_partitions and self.tenants > self.list_max:
                self.row.skipped = capped(self.tenants, self.list_max)
                return
            await self._load(EventStore(pool), conn)
            await conn.execute("VACUUM ANALYZE event_store.events")
            await conn.execute("VACUUM ANALYZE event_store.commands")

    async def _load(self, store: EventStore, conn: psycopg.AsyncConnection[Any]) -> None:
        tenants, events = self.tenants, self.sizes.events
        t0 = time.perf_counter()
        await append_many(store, [(t, "api-first") for t in range(tenants)])
        self.row.add("first", (time.perf_counter() - t0) * 1_000 / tenants)
        api = min(self.sizes.api_events, events - tenants)
        t0 = time.perf_counter()
        await append_many(store, [(i % tenants, f"api-{i}") for i in range(api)])
        if api:
            self.row.add("api_load", api / (time.perf_counter() - t0))
        rest = events - tenants - api
        query = load_query(_STORE_TABLE, "u")
        seconds = await load(conn, query, first=0, last=rest - 1, tenants=tenants)
        self.row.add("raw_load", rest / seconds)
        log(f"  loaded {tenants:,} + {api:,} via append_many, {rest:,} via INSERT ... SELECT")

    async def write(self, turn: int) -> None:
        """One slice of each side's 8-writer run, back to back (who goes first alternates)."""
        smallest = (self.sizes.events - self.sizes.api_events - self.tenants) // self.tenants
        streams = Streams(self.tenants, max(1, min(1_000, smallest // STREAM_EVENTS)))
        seconds = self.sizes.write_seconds / WRITE_SLICES
        rates = {}
        conns = [await connect(self.url) for _ in range(WRITERS)]
        try:
            async with self.pool(WRITERS + 2) as pool:
                store = EventStore(pool)
                if self.per_tenant_partitions:  # a new store learns each tenant's partition once
                    # 100 a call: 1,000 partitions in one transaction can fill the lock table.
                    warm = [(t, f"warm-{turn}") for t in range(self.tenants)]
                    await append_many(store, warm, batch=100)
                query = append_query(_STORE_TABLE)
                # Through the parent, a prepared (generic) plan locks every tenant's partition
                # and its indexes: 8 writers x 4,000 locks at 1,000 tenants fill the server's
                # lock table ("out of shared memory"). Unprepared, each plan is pruned to one
                # partition. (ACCI inserted into the partition itself.)
                prepare = False if self.per_tenant_partitions else None
                sides = {
                    "write": store_append(store),
                    "raw_write": raw_append(conns, lambda _t: query, prepare=prepare),
                }
                for side in list(sides)[:: 1 if turn % 2 == 0 else -1]:
                    rates[side] = await run_writers(sides[side], streams, seconds, seed=turn)
        finally:
            for conn in conns:
                await conn.close()
        for side, rate in rates.items():
            self.row.add(side, rate)
        self.row.add("write_vs_raw", rates["write"] / rates["raw_write"])


async def read_stores(runs: Sequence[StoreRun]) -> None:
    """Every tenant count's read pass, through the store and raw, page-interleaved."""
    async with AsyncExitStack() as stack:
        readers: list[tuple[StoreRun, PageReader, PageReader]] = []
        for run in runs:
            pool = await stack.enter_async_context(run.pool(1))
            conn = await stack.enter_async_context(await connect(run.url))
            await wait_readable(conn, _STORE_TABLE)
            acci = PageReader(store_page(EventStore(pool)), store_position)
            raw = PageReader(raw_page(conn, read_query(_STORE_TABLE)), raw_position)
            readers.append((run, acci, raw))
        log(f"store: read, {len(runs)} tenant counts x (ACCI, raw) page by page")
        await read_interleaved([r for _, acci, raw in readers for r in (acci, raw)])
        for run, acci, raw in readers:
            error = acci.error or raw.error
            if error is not None:
                run.failed("read", error)
                continue
            run.row.add("read", acci.rate)
            run.row.add("raw_read", raw.rate)
            run.row.add("read_vs_raw", acci.rate / raw.rate)


async def append_many(
    store: EventStore, streams: Sequence[tuple[int, str]], *, batch: int = 1_000
) -> None:
    """One new stream of one event each, ``batch`` appends per call."""
    for start in range(0, len(streams), batch):
        appends = [
            StreamAppend(
                tenant_name(tenant),
                stream,
                AGGREGATE_TYPE,
                (NewEvent(EVENT_TYPE, EVENT_VERSION, event_data(start + i)),),
                uuid.uuid4(),
                NO_STREAM,
            )
            for i, (tenant, stream) in enumerate(streams[start : start + batch])
        ]
        await store.append_many(appends)


async def part_b(sizes: Sizes, counts: Sequence[int], list_max: int) -> list[Row]:
    runs = [StoreRun(tenants, sizes, list_max) for tenants in counts]
    try:
        await in_turns(runs, 1, "build")
        live = [run for run in runs if run.row.skipped is None]
        if live:
            await read_stores(live)
        await in_turns(live, WRITE_SLICES, "write")
    finally:
        for run in runs:
            drop_database(run.db)
    layout = next((r.row.layout for r in runs if r.row.layout != "store"), "store")
    for run in runs:  # a run that failed to build may not have learnt it
        run.row.layout = layout
    return [run.row for run in runs]


# -- main ------------------------------------------------------------------------------------


def tenant_counts(text: str) -> list[int]:
    counts = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if not counts or counts[0] <= BIG_TENANTS:
        raise argparse.ArgumentTypeError(f"tenant counts must be above {BIG_TENANTS}: {text!r}")
    return counts


async def run(args: argparse.Namespace) -> str:
    sizes = Sizes.for_run(quick=args.quick)
    out = []
    if "a" in args.parts:
        rows = await part_a(sizes, args.layouts, args.tenants, args.list_max)
        keys = [("read", "read_all"), ("write", "appends")]
        out.append("Part A: candidate layouts, raw SQL\n\n" + markdown(rows, PART_A_COLUMNS, keys))
    if "b" in args.parts:
        rows = await part_b(sizes, args.tenants, args.list_max)
        keys = [("read", "store.read_all"), ("write", "store.append")]
        out.append("Part B: ACCI's store, as migrated\n\n" + markdown(rows, PART_B_COLUMNS, keys))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 events, 2 s write runs")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument(
        "--tenants",
        type=tenant_counts,
        default=list(TENANT_COUNTS),
        help="comma-separated tenant counts (default 10,100,1000,10000)",
    )
    parser.add_argument("--parts", nargs="+", choices=("a", "b"), default=["a", "b"])
    parser.add_argument(
        "--list-max",
        type=int,
        default=1_000,
        help="most tenants a LIST-per-tenant layout is run with (part A and today's store)",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    table = asyncio.run(run(args))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    print(table)


if __name__ == "__main__":
    main()
