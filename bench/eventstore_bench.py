"""ACCI's event store against the eventsourcing library and raw psycopg (the ceiling).

    .venv/bin/python bench/eventstore_bench.py [--quick]

Creates fresh databases ``acci_bench`` (ACCI and raw psycopg, which writes into ACCI's own
``event_store.events`` table) and ``acci_bench_es`` (eventsourcing, default POSTGRES
persistence settings) on the server at ``ACCI_BENCH_SERVER_URL``, runs every case with each
side warmed up and the sides interleaved round by round, and prints one markdown table. Case 9
writes the same events into two more, ``acci_bench_size`` and ``acci_bench_size_es``, weighs
both tables and prints where their bytes go in a second table. ``ACCI_BENCH_DB`` replaces the
``acci_bench`` prefix of every database name (two runs on one server must not share one).
Without the eventsourcing library installed, its column says NOT MEASURED and the rest runs.

The machine this runs on is shared and noisy, so absolute figures mean little: read the ratios.
Each is the median over rounds of ACCI's figure divided by the other side's figure from the same
round (measured back to back), with the lowest and highest round in brackets. For ev/s rows
higher is better for ACCI; for ms and B/event rows lower is. Progress goes to stderr, the tables
to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from acci.domain.events import DomainEvent
from acci.domain.registry import EventRegistry
from acci.domain.registry import registry as domain_registry
from acci.domain.tenant import CreateTenant, RenameTenant, Tenant, TenantState
from acci.eventstore.db import XID8_OID, Xid8Loader, create_pool, ensure_database
from acci.eventstore.records import NO_STREAM, START, NewEvent, RecordedEvent, StreamAppend
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.readmodels.schema import prepare_database

SERVER_URL = os.environ.get(
    "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Every database the bench creates (and drops first) starts with this name, so runs with
# different prefixes can share a server.
DB_PREFIX = os.environ.get("ACCI_BENCH_DB", "acci_bench")
ACCI_DB = DB_PREFIX
ES_DB = f"{DB_PREFIX}_es"
SIZE_DB = f"{DB_PREFIX}_size"  # case 9: ACCI's store holding only the measured events
SIZE_ES_DB = f"{DB_PREFIX}_size_es"  # case 9: eventsourcing's, the same events

TENANT = "bench"  # appends and the read_all seed
LOAD_TENANT = "bench-load"  # the 10,000-event Tenant aggregate (a Tenant's id is its tenant id)
LONG_TENANT = "bench-load-long"  # the 100,000-event one (case 8)
ORDER_TENANT = "bench-order"  # the ordering check
AGGREGATE_TYPE = "Note"
EVENT_TYPE = "BenchNoted"
PAYLOAD_BYTES = 100
WRITERS = 8
PAGE = 1_000
LOAD_EVENTS = 10_000
SNAPSHOT_BURST = 10  # case 6: loads per timed sample
LONG_EVENTS = 100_000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- sizes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each case does; --quick shrinks everything."""

    single_appends: int  # case 1, per side
    concurrent_appends: int  # case 2, per side, over all writers
    batch_appends: int  # case 3: appends of 100 events, per side
    read_events: int  # case 4: events read per pass
    loads: int  # cases 5 and 6: loads per side (median reported)
    order_appends: int  # case 7: appends per writer
    rounds: int  # interleaved rounds for the throughput cases
    long_loads: int  # case 8: loads of the 100,000-event stream per side (median reported)
    stored_events: int  # case 9: events written to each store to weigh them

    @classmethod
    def for_run(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(300, 400, 20, 20_000, 5, 25, 2, 3, 20_000)
        return cls(3_000, 4_000, 150, 100_000, 21, 100, 5, 9, 100_000)


# -- the bench's own event type, registered beside the domain's ------------------------------


def bench_registry() -> EventRegistry:
    """The domain's events plus BenchNoted, so one store can read every row in the table."""
    reg = EventRegistry()
    for event_type in sorted(domain_registry.event_types()):
        reg.register(domain_registry.event_class(event_type))

    @reg.register
    class BenchNoted(DomainEvent):
        event_type: ClassVar[str] = EVENT_TYPE
        event_version: ClassVar[int] = 1
        text: str

    return reg


def payload(i: int) -> dict[str, Any]:
    """~100 bytes of JSON, different for every event: {"text": "0000000042 xxx..."}."""
    head = f"{i:010d} "
    return {"text": head + "x" * (PAYLOAD_BYTES - len('{"text":""}') - len(head))}


def new_events(start: int, count: int) -> list[NewEvent]:
    return [NewEvent(EVENT_TYPE, 1, payload(start + i)) for i in range(count)]


# -- the eventsourcing side ------------------------------------------------------------------

# The baseline library is a dev extra: without it the bench still runs ACCI and raw, and every
# figure eventsourcing would have given says so in capitals.
try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.postgres import PostgresApplicationRecorder
except ImportError as e:
    ES_MISSING: str | None = (
        f"NOT MEASURED (eventsourcing not installed: {e.name});"
        " .venv/bin/pip install 'eventsourcing[postgres]>=9.5,<9.6'"
    )
else:
    ES_MISSING = None

    class EsNote(Aggregate):
        """eventsourcing's counterpart of a Note stream: one attribute set by each event."""

        @event("Created")
        def __init__(self) -> None:
            self.text = ""

        @event("Noted")
        def note(self, text: str) -> None:
            self.text = text

    class EsBench(Application[uuid.UUID]):
        name = "Bench"

    class EsText(Aggregate):
        """The storage case's stream: every event, the first too, carries the same text as
        ACCI's event of that stream and sequence number."""

        @event("Created")
        def __init__(self, text: str) -> None:
            self.text = text

        @event("Noted")
        def note(self, text: str) -> None:
            self.text = text

    class EsStorage(Application[uuid.UUID]):
        """Only the events of the storage case (9), in a database of its own."""

        name = "Storage"


def es_env(dbname: str = ES_DB) -> dict[str, str]:
    """eventsourcing's POSTGRES persistence, default settings, on a bench database."""
    params = conninfo_to_dict(SERVER_URL)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        # Only adds the snapshots table; saving is untouched (no snapshotting intervals).
        "IS_SNAPSHOTTING_ENABLED": "y",
    }


# -- raw psycopg: the same rows in the same table, with nothing around them ---------------------

_RAW_COLUMNS = (
    "event_id, tenant_id, aggregate_id, aggregate_type, sequence_number, event_type,"
    " event_version, data, metadata, command_id"
)


@cache
def raw_insert(rows: int) -> bytes:
    """A multi-row INSERT into ACCI's table, returning what an append returns.

    Rendered once: psycopg would otherwise re-render a Composed of 1,000 parts per execute.
    """
    row = sql.SQL("({})").format(sql.SQL(", ").join([sql.Placeholder()] * 10))
    return (
        sql.SQL(
            "INSERT INTO event_store.events ({columns}) VALUES {rows}"
            " RETURNING event_id, sequence_number, global_position, transaction_id"
        )
        .format(columns=sql.SQL(_RAW_COLUMNS), rows=sql.SQL(", ").join([row] * rows))
        .as_bytes()
    )


RAW_READ_ALL = (
    "SELECT event_id, tenant_id, aggregate_id, aggregate_type, sequence_number, event_type,"
    " event_version, data, metadata, command_id, created_at, global_position, transaction_id"
    " FROM event_store.events WHERE (transaction_id, global_position) > (%s::text::xid8, %s)"
    " ORDER BY transaction_id, global_position LIMIT %s"
)
RAW_READ_STREAM = (
    "SELECT event_type, event_version, data FROM event_store.events"
    " WHERE tenant_id = %s AND aggregate_id = %s AND aggregate_type = 'Tenant'"
    " AND sequence_number > %s"
    " ORDER BY sequence_number"
)
RAW_SNAPSHOT = (
    "SELECT sequence_number, state FROM snapshots.aggregate_snapshots"
    " WHERE tenant_id = %s AND aggregate_id = %s AND aggregate_type = 'Tenant'"
    " AND schema_version = %s ORDER BY sequence_number DESC LIMIT 1"
)


async def raw_append(
    conn: psycopg.AsyncConnection[Any], stream: str, version: int, events: Sequence[NewEvent]
) -> int:
    """One INSERT (one row per event) in its own autocommit transaction; the new version."""
    command_id = uuid.uuid4()
    params: list[object] = []
    for i, e in enumerate(events, start=1):
        params += (
            uuid.uuid4(),
            TENANT,
            stream,
            AGGREGATE_TYPE,
            version + i,
            e.event_type,
            e.event_version,
            Jsonb(e.data),
            Jsonb(e.metadata),
            command_id,
        )
    cur = await conn.execute(raw_insert(len(events)), params)
    await cur.fetchall()
    return version + len(events)


async def raw_connection(url: str) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    conn.adapters.register_loader(XID8_OID, Xid8Loader)  # as ACCI's pool does
    return conn


# -- timing ------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Work done and seconds spent by one side, one entry per round."""

    work: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, work: int, seconds: float) -> None:
        self.work.append(work)
        self.seconds.append(seconds)

    def per_round(self, unit: str) -> list[float]:
        """Each round's figure: work per second ("ev/s") or milliseconds per unit of work."""
        pairs = zip(self.work, self.seconds, strict=True)
        if unit == "ev/s":
            return [w / s for w, s in pairs]
        return [s * 1_000 / w for w, s in pairs]


Side = Callable[[int], Awaitable[tuple[int, float]]]


def burst(side: Side, n: int) -> Side:
    """The side run ``n`` times back to back as one sample (its work and seconds summed)."""

    async def run(r: int) -> tuple[int, float]:
        work, seconds = 0, 0.0
        for _ in range(n):
            w, s = await side(r)
            work, seconds = work + w, seconds + s
        return work, seconds

    return run


async def interleaved(rounds: int, sides: dict[str, Side]) -> dict[str, Timing]:
    """Run each side once per round, rotating who goes first; each returns (work, seconds)."""
    names = list(sides)
    timings = {name: Timing() for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            work, seconds = await sides[name](r)
            timings[name].add(work, seconds)
    return timings


class Clock:
    """Sums perf_counter time over the timed sections only."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self) -> Clock:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._t0


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    text: str
    met: bool
    measured: bool = True  # False: a side it compares with did not run (not installed)

    def __str__(self) -> str:
        if not self.measured:
            return f"{self.text}: NOT MEASURED"
        return f"{self.text}: {'PASS' if self.met else 'MISS'}"


@dataclass
class Ratio:
    """The median of per-round ratios (sides run back to back), with their range."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        if len({self.low, self.high}) == 1:
            return f"{self.median:.2f}x"
        return f"{self.median:.2f}x ({self.low:.2f}-{self.high:.2f})"


@dataclass
class Result:
    """One row of the table; ``unit`` is "ev/s" (higher is better), "ms" or "B/event" (lower is)."""

    case: str
    unit: str
    timings: dict[str, Timing] = field(default_factory=dict)  # by side: acci, es, raw
    targets: list[Target] = field(default_factory=list)
    cells: dict[str, str] = field(default_factory=dict)  # text standing in for a figure
    # Figures measured once, not per round (bytes per event): by side.
    measured: dict[str, float] = field(default_factory=dict)

    def figure(self, side: str) -> float | None:
        """The side's median per-round figure (or its one measured figure)."""
        if side in self.measured:
            return self.measured[side]
        timing = self.timings.get(side)
        return None if timing is None else statistics.median(timing.per_round(self.unit))

    def ratio(self, other: str) -> Ratio | None:
        """ACCI's figure over the other side's, paired round by round so drift cancels out."""
        if "acci" in self.measured and other in self.measured:
            value = self.measured["acci"] / self.measured[other]
            return Ratio(value, value, value)
        if "acci" not in self.timings or other not in self.timings:
            return None
        ratios = sorted(
            a / b
            for a, b in zip(
                self.timings["acci"].per_round(self.unit),
                self.timings[other].per_round(self.unit),
                strict=True,
            )
        )
        return Ratio(statistics.median(ratios), ratios[0], ratios[-1])

    def check(
        self,
        text: str,
        value: float | None,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
    ) -> None:
        """Add a target, met when ``value`` is within the bound (None: not measured)."""
        met = (
            value is not None
            and (at_least is None or value >= at_least)
            and (at_most is None or value <= at_most)
        )
        self.targets.append(Target(text, met, value is not None))

    def median_ratio(self, other: str) -> float | None:
        ratio = self.ratio(other)
        return None if ratio is None else ratio.median

    def row(self) -> list[str]:
        def figure(side: str) -> str:
            if side in self.cells:
                return self.cells[side]
            value = self.figure(side)
            if value is None:
                return ES_MISSING if side == "es" and ES_MISSING else "-"
            if self.unit == "ms":
                return f"{value:,.2f} ms"
            return f"{value:,.0f} {self.unit}"

        return [
            self.case,
            figure("acci"),
            figure("es"),
            figure("raw"),
            str(self.ratio("es") or "-"),
            str(self.ratio("raw") or "-"),
            "; ".join(map(str, self.targets)) or "-",
        ]


def markdown(results: Sequence[Result]) -> str:
    header = [
        "Case",
        "ACCI",
        "eventsourcing",
        "raw psycopg (ceiling)",
        "ACCI/eventsourcing",
        "ACCI/raw",
        "Target",
    ]
    rows = [header, ["---"] * len(header), *(r.row() for r in results)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


# -- the bench ---------------------------------------------------------------------------------


@dataclass
class Bench:
    sizes: Sizes
    store: EventStore
    repo: AggregateRepository
    app: EsBench | None  # None: eventsourcing is not installed
    raws: list[psycopg.AsyncConnection[Any]]
    pool: AsyncConnectionPool
    acci_url: str
    versions: dict[str, int] = field(default_factory=dict)  # ACCI and raw stream versions

    # 1. ---------------------------------------------------------------------------------------

    async def single_appends(self) -> Result:
        per_round = self.sizes.single_appends // self.sizes.rounds

        async def acci(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for _i in range(n):
                events = new_events(0, 1)
                with clock:
                    await self._acci_append("acci-single", events)
            return n, clock.seconds

        def es_side(app: EsBench) -> Side:
            es_note = EsNote()
            app.save(es_note)

            async def es(_: int, n: int = per_round) -> tuple[int, float]:
                clock = Clock()
                for i in range(n):
                    es_note.note(payload(i)["text"])
                    with clock:
                        app.save(es_note)
                return n, clock.seconds

            return es

        async def raw(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for _i in range(n):
                events = new_events(0, 1)
                with clock:
                    await self._raw_append(self.raws[0], "raw-single", events)
            return n, clock.seconds

        sides = self._sides(acci, es_side, raw)
        await self._warm_up(sides, 50)
        t = await interleaved(self.sizes.rounds, sides)
        return Result("1. single-event appends, 1 writer", "ev/s", t)

    # 2. ---------------------------------------------------------------------------------------

    async def concurrent_appends(self) -> Result:
        per_writer = self.sizes.concurrent_appends // self.sizes.rounds // WRITERS

        async def acci(_: int, n: int = per_writer) -> tuple[int, float]:
            async def writer(w: int) -> None:
                for i in range(n):
                    await self._acci_append(f"acci-w{w}", new_events(i, 1))

            t0 = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
            return n * WRITERS, time.perf_counter() - t0

        def es_side(app: EsBench) -> Side:
            es_notes = [EsNote() for _ in range(WRITERS)]
            app.save(*es_notes)

            async def es(_: int, n: int = per_writer) -> tuple[int, float]:
                # eventsourcing is synchronous: one thread per writer, all started together.
                start = threading.Barrier(WRITERS + 1)
                errors: list[BaseException] = []

                def writer(note: EsNote) -> None:
                    start.wait()
                    try:
                        for i in range(n):
                            note.note(payload(i)["text"])
                            app.save(note)
                    except BaseException as e:
                        errors.append(e)

                threads = [threading.Thread(target=writer, args=(note,)) for note in es_notes]
                for thread in threads:
                    thread.start()
                start.wait()
                t0 = time.perf_counter()
                for thread in threads:
                    thread.join()
                if errors:
                    raise errors[0]
                return n * WRITERS, time.perf_counter() - t0

            return es

        async def raw(_: int, n: int = per_writer) -> tuple[int, float]:
            async def writer(w: int) -> None:
                for i in range(n):
                    await self._raw_append(self.raws[w], f"raw-w{w}", new_events(i, 1))

            t0 = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
            return n * WRITERS, time.perf_counter() - t0

        sides = self._sides(acci, es_side, raw)
        await self._warm_up(sides, 20)
        t = await interleaved(self.sizes.rounds, sides)
        result = Result(f"2. single-event appends, {WRITERS} writers", "ev/s", t)
        result.check(">= 3.5x eventsourcing", result.median_ratio("es"), at_least=3.5)
        result.check(">= 0.6x raw", result.median_ratio("raw"), at_least=0.6)
        return result

    # 3. ---------------------------------------------------------------------------------------

    async def batch_appends(self, batch: int = 100) -> Result:
        per_round = self.sizes.batch_appends // self.sizes.rounds

        async def acci(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for i in range(n):
                events = new_events(i * batch, batch)
                with clock:
                    await self._acci_append("acci-batch", events)
            return n * batch, clock.seconds

        def es_side(app: EsBench) -> Side:
            es_note = EsNote()
            app.save(es_note)

            async def es(_: int, n: int = per_round) -> tuple[int, float]:
                clock = Clock()
                for i in range(n):
                    for j in range(batch):
                        es_note.note(payload(i * batch + j)["text"])
                    with clock:
                        app.save(es_note)
                return n * batch, clock.seconds

            return es

        async def raw(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for i in range(n):
                events = new_events(i * batch, batch)
                with clock:
                    await self._raw_append(self.raws[0], "raw-batch", events)
            return n * batch, clock.seconds

        sides = self._sides(acci, es_side, raw)
        await self._warm_up(sides, 8)
        t = await interleaved(self.sizes.rounds, sides)
        result = Result(f"3. {batch}-event appends", "ev/s", t)
        result.check(">= 1.0x raw", result.median_ratio("raw"), at_least=1.0)
        return result

    # 4. ---------------------------------------------------------------------------------------

    async def read_all(self) -> Result:
        n = self.sizes.read_events
        await self._seed_acci(n)

        async def acci(_: int) -> tuple[int, float]:
            read, position = 0, START
            t0 = time.perf_counter()
            while read < n:
                page = await self.store.read_all(position, limit=PAGE)
                if not page:
                    break
                read += len(page)
                position = page[-1].position
            return read, time.perf_counter() - t0

        async def raw(_: int) -> tuple[int, float]:
            read, tx, gp = 0, 0, 0
            conn = self.raws[0]
            t0 = time.perf_counter()
            while read < n:
                cur = await conn.execute(RAW_READ_ALL, (str(tx), gp, PAGE))
                rows = await cur.fetchall()
                if not rows:
                    break
                read += len(rows)
                gp, tx = rows[-1][11], rows[-1][12]
            return read, time.perf_counter() - t0

        def es_side(app: EsBench) -> Side:
            self._seed_es(app, n)
            recorder = app.recorder
            decode = app.mapper.transcoder.decode

            async def es(_: int) -> tuple[int, float]:
                read, start = 0, 1
                t0 = time.perf_counter()
                while read < n:
                    notifications = recorder.select_notifications(start, PAGE)
                    if not notifications:
                        break
                    for notification in notifications:
                        decode(notification.state)  # the JSON, as ACCI's and raw's rows have it
                    read += len(notifications)
                    start = notifications[-1].id + 1
                return read, time.perf_counter() - t0

            return es

        sides = self._sides(acci, es_side, raw)
        log("warming up (one full pass each)")
        for side in sides.values():
            await side(0)
        t = await interleaved(max(3, self.sizes.rounds), sides)
        result = Result(
            f"4. read_all of {n:,} events, pages of {PAGE:,}",
            "ev/s",
            t,
        )
        result.check(">= 0.8x raw", result.median_ratio("raw"), at_least=0.8)
        return result

    async def _seed_acci(self, n: int) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM event_store.events")
            row = await cur.fetchone()
        have = int(row[0]) if row else 0
        log(f"seeding ACCI: {have:,} events stored, {n:,} wanted")
        batch, i = 1_000, 0
        while have < n:
            await self.store.append(
                TENANT,
                f"seed-{i}",
                AGGREGATE_TYPE,
                new_events(have, batch),
                command_id=uuid.uuid4(),
                expected_version=NO_STREAM,
            )
            have, i = have + batch, i + 1
        async with self.pool.connection() as conn:
            await conn.execute("ANALYZE event_store.events")

    @staticmethod
    def _seed_es(app: EsBench, n: int) -> None:
        have = app.recorder.max_notification_id() or 0
        log(f"seeding eventsourcing: {have:,} events stored, {n:,} wanted")
        while have < n:
            note = EsNote()
            for i in range(999):
                note.note(payload(have + i)["text"])
            app.save(note)
            have += 1_000

    # 5. and 6. --------------------------------------------------------------------------------

    async def create_big_aggregates(self) -> uuid.UUID | None:
        """A Tenant of 10,000 events in ACCI (and raw's table), an EsNote of 10,000 in es."""
        await self._create_tenant_stream(LOAD_TENANT, LOAD_EVENTS)
        if self.app is None:
            return None
        note = EsNote()
        for i in range(LOAD_EVENTS - 1):
            note.note(payload(i)["text"])
            if i % 1_000 == 998:
                self.app.save(note)
        self.app.save(note)
        return note.id

    async def load(self, es_id: uuid.UUID | None) -> list[Result]:
        loads = self.sizes.loads
        acci, raw = self._load_sides(LOAD_TENANT, LOAD_EVENTS)

        def es_side(app: EsBench) -> Side:
            assert es_id is not None

            async def es(_: int) -> tuple[int, float]:
                t0 = time.perf_counter()
                note: EsNote = app.repository.get(es_id)
                seconds = time.perf_counter() - t0
                assert note.version == LOAD_EVENTS, note.version
                return 1, seconds

            return es

        sides = self._sides(acci, es_side, raw)
        await self._warm_up_n(sides, 2)
        t = await interleaved(loads, sides)
        full = Result(
            f"5. load a {LOAD_EVENTS:,}-event aggregate, no snapshot (median of {loads})",
            "ms",
            t,
        )
        full.check("<= 1.5x raw", full.median_ratio("raw"), at_most=1.5)

        log("snapshotting both aggregates at their heads")
        tenant = await self.repo.load(Tenant, LOAD_TENANT, LOAD_TENANT)
        await self.repo.snapshot(tenant)
        if self.app is not None and es_id is not None:
            self.app.take_snapshot(es_id)
        loads *= 4  # each is short: more of them for a steadier median
        # A sample is a burst of loads back to back, timed as one: the gc.collect() before each
        # sample leaves the next fraction of a millisecond paying for cold caches (a 0.45 ms
        # load measured 1.2 ms right after one, for every side alike).
        bursts = {name: burst(side, SNAPSHOT_BURST) for name, side in sides.items()}
        await self._warm_up_n(bursts, 5)
        t = await interleaved(loads, bursts)
        snap = Result(
            f"6. the same, snapshot at the head (median of {loads} bursts of {SNAPSHOT_BURST})",
            "ms",
            t,
        )
        snap.check("<= 1 ms", snap.figure("acci"), at_most=1.0)
        return [full, snap]

    async def _create_tenant_stream(self, tenant_id: str, events: int) -> None:
        """A Tenant stream of ``events`` events (created, then renamed) in ACCI's table."""
        tenant = Tenant(tenant_id, tenant_id)
        tenant.handle(CreateTenant(tenant_id=tenant_id, name=tenant_name(0)))
        for i in range(1, events):
            tenant.handle(RenameTenant(tenant_id=tenant_id, name=tenant_name(i)))
        encode = self.store.registry.encode
        pending = [NewEvent(*encode(e)) for e in tenant.uncommitted_events]
        for start in range(0, len(pending), 1_000):
            await self.store.append(
                tenant_id,
                tenant_id,
                Tenant.aggregate_type,
                pending[start : start + 1_000],
                command_id=uuid.uuid4(),
                expected_version=start,
            )

    def _load_sides(self, tenant_id: str, events: int) -> tuple[Side, Side]:
        """ACCI's load of a Tenant stream, and the raw fetch-decode-fold of the same rows."""

        async def acci(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            tenant = await self.repo.load(Tenant, tenant_id, tenant_id)
            seconds = time.perf_counter() - t0
            assert tenant.version == events, tenant.version
            return 1, seconds

        async def raw(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            state, version = await self._raw_fetch_and_fold(tenant_id)
            seconds = time.perf_counter() - t0
            assert version == events and state.name == tenant_name(events - 1)
            return 1, seconds

        return acci, raw

    async def _raw_fetch_and_fold(self, tenant_id: str) -> tuple[TenantState, int]:
        """ACCI's load minus ACCI: the snapshot row, the rows after it, decode, evolve."""
        conn = self.raws[0]
        cur = await conn.execute(RAW_SNAPSHOT, (tenant_id, tenant_id, Tenant.state_schema_version))
        snapshot = await cur.fetchone()
        state, version = Tenant.initial_state(), 0
        if snapshot is not None:
            version, state = snapshot[0], TenantState.model_validate(snapshot[1])
        cur = await conn.execute(RAW_READ_STREAM, (tenant_id, tenant_id, version))
        decode, evolve = domain_registry.decode, Tenant.evolve
        for event_type, event_version, data in await cur.fetchall():
            state = evolve(state, decode(event_type, event_version, data))
            version += 1
        return state, version

    # 7. ---------------------------------------------------------------------------------------

    async def ordering(self) -> Result:
        """8 writers and a tailing reader while a transaction begun first commits last."""
        per_writer = self.sizes.order_appends
        start = await self.store.head(tenant_id=ORDER_TENANT)
        appended: set[uuid.UUID] = set()
        seen: list[RecordedEvent] = []
        naive_seen: set[uuid.UUID] = set()
        committed = asyncio.Event()

        async with await psycopg.AsyncConnection.connect(self.acci_url) as late:
            late_command = uuid.uuid4()
            cur = await late.execute(
                "INSERT INTO event_store.events (event_id, tenant_id, aggregate_id,"
                " aggregate_type, sequence_number, event_type, event_version, data, command_id)"
                " VALUES (%s, %s, 'late', %s, 1, %s, 1, %s, %s) RETURNING event_id",
                (
                    uuid.uuid5(late_command, "0"),
                    ORDER_TENANT,
                    AGGREGATE_TYPE,
                    EVENT_TYPE,
                    Jsonb(payload(0)),
                    late_command,
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            late_event: uuid.UUID = row[0]

            async def writer(w: int) -> None:
                for i in range(per_writer):
                    r = await self.store.append(
                        ORDER_TENANT,
                        f"w{w}-{i % 5}",
                        AGGREGATE_TYPE,
                        new_events(i, 1),
                        command_id=uuid.uuid4(),
                    )
                    appended.update(r.event_ids)

            async def reader() -> None:
                position, naive_position = start, 0
                while True:
                    finished = committed.is_set()
                    page = await self.store.read_all(position, limit=100, tenant_id=ORDER_TENANT)
                    seen.extend(page)
                    if page:
                        position = page[-1].position
                    # The naive reader trusts global_position alone.
                    async with self.pool.connection() as conn:
                        cur = await conn.execute(
                            "SELECT event_id, global_position FROM event_store.events"
                            " WHERE tenant_id = %s AND global_position > %s"
                            " ORDER BY global_position",
                            (ORDER_TENANT, naive_position),
                        )
                        for event_id, gp in await cur.fetchall():
                            naive_seen.add(event_id)
                            naive_position = gp
                    if finished and not page:
                        return
                    await asyncio.sleep(0 if page else 0.001)

            read_task = asyncio.create_task(reader())
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
            await late.commit()
            committed.set()
            await asyncio.wait_for(read_task, timeout=120)

        expected = appended | {late_event}
        ids = [e.event_id for e in seen]
        missed = len(expected - set(ids))
        duplicates = len(ids) - len(set(ids))
        in_order = [e.position for e in seen] == sorted(e.position for e in seen)
        naive_missed = len(expected - naive_seen)
        acci_cell = f"{missed} never seen of {len(expected):,}"
        if duplicates or not in_order:
            acci_cell += f", {duplicates} twice, {'in' if in_order else 'OUT OF'} order"
        result = Result(
            f"7. ordering: {WRITERS} writers x {per_writer} + tailing reader + late commit",
            "count",
            cells={
                "acci": acci_cell,
                "es": "- (LOCK TABLE serialises its writers)",
                "raw": f"naive global_position reader: {naive_missed} never seen",
            },
        )
        result.check("0 never seen", missed + duplicates + (not in_order), at_most=0)
        return result

    # 8. ---------------------------------------------------------------------------------------

    async def long_load(self) -> Result:
        """A 100,000-event stream against the raw fetch-decode-fold of the same rows."""
        log(f"creating the {LONG_EVENTS:,}-event aggregate")
        await self._create_tenant_stream(LONG_TENANT, LONG_EVENTS)
        async with self.pool.connection() as conn:
            await conn.execute("ANALYZE event_store.events")
        acci, raw = self._load_sides(LONG_TENANT, LONG_EVENTS)
        sides: dict[str, Side] = {"acci": acci, "raw": raw}
        await self._warm_up_n(sides, 1)
        loads = self.sizes.long_loads
        t = await interleaved(loads, sides)
        result = Result(
            f"8. load a {LONG_EVENTS:,}-event aggregate, no snapshot (median of {loads})",
            "ms",
            t,
            cells={"es": "-"},
        )
        result.check("<= 1.15x raw", result.median_ratio("raw"), at_most=1.15)
        return result

    # -- helpers ------------------------------------------------------------------------------

    async def _acci_append(self, stream: str, events: list[NewEvent]) -> None:
        version = self.versions.get(stream, 0)
        result = await self.store.append(
            TENANT,
            stream,
            AGGREGATE_TYPE,
            events,
            command_id=uuid.uuid4(),
            expected_version=version,
        )
        self.versions[stream] = result.stream_version

    async def _raw_append(
        self, conn: psycopg.AsyncConnection[Any], stream: str, events: list[NewEvent]
    ) -> None:
        self.versions[stream] = await raw_append(conn, stream, self.versions.get(stream, 0), events)

    def _sides(self, acci: Side, es: Callable[[EsBench], Side], raw: Side) -> dict[str, Side]:
        """A case's sides; eventsourcing's is set up (by ``es``) only if it is installed."""
        if self.app is None:
            return {"acci": acci, "raw": raw}
        return {"acci": acci, "es": es(self.app), "raw": raw}

    @staticmethod
    async def _warm_up(sides: dict[str, Any], n: int) -> None:
        for side in sides.values():
            await side(0, n)

    @staticmethod
    async def _warm_up_n(sides: dict[str, Side], n: int) -> None:
        for _ in range(n):
            for side in sides.values():
                await side(0)


def tenant_name(i: int) -> str:
    # TenantRenamed data is {"old_name": ..., "new_name": ...}: ~100 bytes of JSON.
    return f"Benchmark tenant {i:06d}, renamed"


# -- 9. storage: the same events in each store, weighed -----------------------------------------

STORAGE_TENANT = "bench-size"
STREAM_EVENTS = 100  # each stream's length
PASS_EVENTS = 10  # appended to every stream per pass, so streams grow interleaved as in use
BATCH_STREAMS = 100  # streams per append_many / save call (one command each)


@dataclass(frozen=True)
class Part:
    """One relation (or fork) of a store's events table: its size and what fills it."""

    name: str
    size: int
    detail: str
    counted: bool = True  # False: shown beside the table, not part of its total


@dataclass(frozen=True)
class Footprint:
    """A store's events table holding ``events`` events: its total size and its parts."""

    store: str
    events: int
    total: int
    parts: list[Part]

    @property
    def per_event(self) -> float:
        return self.total / self.events


def stored_text(stream: int, sequence: int) -> str:
    """The payload text of one stream's event: the same in both stores."""
    return str(payload(stream * STREAM_EVENTS + sequence)["text"])


async def fill_acci(n: int) -> Footprint:
    """``n`` events written as commands would write them, into a fresh ACCI database."""
    url = database_url(SIZE_DB)
    await ensure_database(url)
    async with create_pool(url, min_size=1, max_size=2) as pool:
        await prepare_database(pool)
        store = EventStore(pool, registry=bench_registry(), max_events_per_append=1_000)
        streams = n // STREAM_EVENTS
        for first_sequence in range(0, STREAM_EVENTS, PASS_EVENTS):
            for first in range(0, streams, BATCH_STREAMS):
                appends = []
                for stream in range(first, min(first + BATCH_STREAMS, streams)):
                    command = str(uuid.uuid4())
                    # What the command handler puts in every event's envelope.
                    envelope = {"correlation_id": command, "causation_id": command}
                    events = tuple(
                        NewEvent(EVENT_TYPE, 1, {"text": stored_text(stream, seq)}, envelope)
                        for seq in range(first_sequence, first_sequence + PASS_EVENTS)
                    )
                    appends.append(
                        StreamAppend(
                            STORAGE_TENANT,
                            f"note-{stream}",
                            AGGREGATE_TYPE,
                            events,
                            uuid.UUID(command),
                            first_sequence,
                        )
                    )
                await store.append_many(appends, metadata={"command_type": "NoteText"})
    return await weigh(url, "ACCI", "event_store.events", beside=["event_store.commands"])


async def fill_es(n: int) -> Footprint:
    """The same events, streams and batches in a fresh eventsourcing database."""
    app = EsStorage(env=es_env(SIZE_ES_DB))
    try:
        streams = n // STREAM_EVENTS
        notes: list[EsText] = []
        for first_sequence in range(0, STREAM_EVENTS, PASS_EVENTS):
            for first in range(0, streams, BATCH_STREAMS):
                batch = []
                for stream in range(first, min(first + BATCH_STREAMS, streams)):
                    for seq in range(first_sequence, first_sequence + PASS_EVENTS):
                        if seq == 0:
                            notes.append(EsText(stored_text(stream, seq)))
                        else:
                            notes[stream].note(stored_text(stream, seq))
                    batch.append(notes[stream])
                app.save(*batch)
        assert isinstance(app.recorder, PostgresApplicationRecorder)
        table = app.recorder.events_table_name
    finally:
        app.close()
    return await weigh(database_url(SIZE_ES_DB), "eventsourcing", table)


async def weigh(url: str, store: str, table: str, *, beside: Sequence[str] = ()) -> Footprint:
    """The table's pg_total_relation_size after a VACUUM, and where its bytes are."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        name = sql.Identifier(*table.split("."))
        # Both tables get the same VACUUM, so both have their free-space and visibility maps.
        await conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(name))
        stattuple = await _has_pgstattuple(conn)
        events = await _scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(name))
        total = await _scalar(conn, "SELECT pg_total_relation_size(%s::regclass)", (table,))
        parts = [await _heap(conn, table, events, stattuple=stattuple)]
        parts += await _indexes(conn, table, stattuple=stattuple)
        toast = await _scalar(
            conn,
            "SELECT coalesce(pg_total_relation_size(nullif(reltoastrelid, 0)), 0)"
            " FROM pg_class WHERE oid = %s::regclass",
            (table,),
        )
        parts.append(Part("TOAST (table and index)", toast, "payloads over ~2 kB: none here"))
        maps = total - sum(p.size for p in parts)
        parts.append(Part("free-space and visibility maps", maps, "forks VACUUM writes"))
        for other in beside:
            size = await _scalar(conn, "SELECT pg_total_relation_size(%s::regclass)", (other,))
            parts.append(Part(other, size, "written with the events; not in the row", False))
    return Footprint(store, events, total, parts)


async def _has_pgstattuple(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether pgstattuple is (or could be made) available: exact leaf density and tuple sizes."""
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    except psycopg.Error as e:
        log(f"pgstattuple unavailable ({e}): densities are estimated")
        return False
    return True


async def _scalar(
    conn: psycopg.AsyncConnection[Any], query: Any, params: Sequence[object] = ()
) -> int:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _heap(
    conn: psycopg.AsyncConnection[Any], table: str, events: int, *, stattuple: bool
) -> Part:
    """The heap: its bytes per row, and each column's average stored size."""
    size = await _scalar(conn, "SELECT pg_relation_size(%s::regclass)", (table,))
    cur = await conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        (table,),
    )
    columns = [str(row[0]) for row in await cur.fetchall()]
    widths = sql.SQL(", ").join(
        sql.SQL("avg(pg_column_size({}))::float8").format(sql.Identifier(c)) for c in columns
    )
    name = sql.Identifier(*table.split("."))
    cur = await conn.execute(sql.SQL("SELECT {} FROM {}").format(widths, name))
    averages = await cur.fetchone()
    assert averages is not None
    by_column = ", ".join(f"{c} {w:.0f}" for c, w in zip(columns, averages, strict=True))
    detail = f"columns (average bytes): {by_column}"
    if stattuple:
        cur = await conn.execute(
            "SELECT tuple_len, free_space FROM pgstattuple(%s::regclass)", (table,)
        )
        row = await cur.fetchone()
        assert row is not None
        tuple_len, free = int(row[0]), int(row[1])
        detail = (
            f"{tuple_len / events:.0f} B per row (header and aligned columns) + 4 B line pointer,"
            f" {free / size:.0%} of pages free; {detail}"
        )
    return Part(f"{table} heap", size, detail)


async def _indexes(
    conn: psycopg.AsyncConnection[Any], table: str, *, stattuple: bool
) -> list[Part]:
    """Each index: its size, its key and how full its leaf pages are."""
    cur = await conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid),"
        " pg_get_indexdef(i.indexrelid), am.amname"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am am ON am.oid = c.relam"
        " WHERE i.indrelid = %s::regclass ORDER BY 1",
        (table,),
    )
    parts = []
    for name, size, definition, method in await cur.fetchall():
        key = str(definition).partition(" USING ")[2]
        detail = key
        if stattuple and method == "btree":
            stats = await conn.execute(
                "SELECT avg_leaf_density, leaf_pages FROM pgstatindex(%s::regclass)", (name,)
            )
            row = await stats.fetchone()
            assert row is not None
            detail = f"{key}: {row[1]:,} leaf pages at {float(row[0]):.0f} % density"
        parts.append(Part(f"index {name}", int(size), detail))
    return parts


def storage_result(acci: Footprint, es: Footprint | None) -> Result:
    """Row 9: bytes per event of the two tables holding the same events."""
    result = Result(
        f"9. bytes per event (table + indexes), the same {acci.events:,} events",
        "B/event",
        measured={"acci": acci.per_event},
        cells={"raw": "-"},
    )
    if es is not None:
        if es.events != acci.events:
            raise AssertionError(f"eventsourcing stored {es.events} events, ACCI {acci.events}")
        result.measured["es"] = es.per_event
    result.check("<= 1.0x eventsourcing", result.median_ratio("es"), at_most=1.0)
    return result


def storage_markdown(footprints: Sequence[Footprint]) -> str:
    """Where each store's bytes go, relation by relation."""
    header = ["Store", "Relation", "Bytes", "Bytes/event", "What fills it"]
    rows = [header, ["---"] * len(header)]
    for f in footprints:
        for p in f.parts:
            rows.append([f.store, p.name, f"{p.size:,}", f"{p.size / f.events:.1f}", p.detail])
        rows.append(
            [
                f.store,
                "**total (pg_total_relation_size)**",
                f"{f.total:,}",
                f"**{f.per_event:.1f}**",
                f"{f.events:,} events",
            ]
        )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


# -- set-up ------------------------------------------------------------------------------------


def database_url(name: str) -> str:
    params = conninfo_to_dict(SERVER_URL)
    params["dbname"] = name
    return make_conninfo("", **params)


def recreate_databases() -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        for name in (ACCI_DB, ES_DB, SIZE_DB, SIZE_ES_DB):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        # eventsourcing does not create its database; ACCI does (ensure_database).
        for name in (ES_DB, SIZE_ES_DB):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


async def run(sizes: Sizes) -> tuple[list[Result], list[Footprint]]:
    """Every case, in order; the results and where each store's bytes went (case 9)."""
    recreate_databases()
    if ES_MISSING:
        log(f"eventsourcing: {ES_MISSING}")
    acci_url = database_url(ACCI_DB)
    await ensure_database(acci_url)
    pool = create_pool(acci_url, min_size=WRITERS + 2, max_size=WRITERS + 2)
    await pool.open(wait=True)
    app = None if ES_MISSING else EsBench(env=es_env())
    raws = [await raw_connection(acci_url) for _ in range(WRITERS)]
    try:
        await prepare_database(pool)
        registry = bench_registry()
        store = EventStore(pool, registry=registry, max_events_per_append=1_000)
        repo = AggregateRepository(store, SnapshotStore(pool))
        bench = Bench(sizes, store, repo, app, raws, pool, acci_url)
        results = []
        log("1. single-event appends, 1 writer")
        results.append(await bench.single_appends())
        log(f"2. single-event appends, {WRITERS} writers")
        results.append(await bench.concurrent_appends())
        log("3. 100-event appends")
        results.append(await bench.batch_appends())
        log(f"creating the {LOAD_EVENTS:,}-event aggregates")
        es_id = await bench.create_big_aggregates()
        log(f"4. read_all of {sizes.read_events:,} events")
        results.append(await bench.read_all())
        log("5./6. aggregate loads")
        results.extend(await bench.load(es_id))
        log("7. ordering check")
        results.append(await bench.ordering())
        log(f"8. load of a {LONG_EVENTS:,}-event aggregate")
        results.append(await bench.long_load())
    finally:
        for conn in raws:
            await conn.close()
        if app is not None:
            app.close()
        await pool.close()
    log(f"9. the same {sizes.stored_events:,} events in a fresh database of each store")
    footprints = [await fill_acci(sizes.stored_events)]
    if not ES_MISSING:
        footprints.append(await fill_es(sizes.stored_events))
    results.append(storage_result(footprints[0], footprints[1] if len(footprints) > 1 else None))
    return results, footprints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    args = parser.parse_args()
    sizes = Sizes.for_run(quick=args.quick)
    t0 = time.perf_counter()
    results, footprints = asyncio.run(run(sizes))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    print(markdown(results))
    print()
    print(storage_markdown(footprints))


if __name__ == "__main__":
    main()
