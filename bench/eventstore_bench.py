"""ACCI's event store against the eventsourcing library and raw psycopg (the ceiling).

    .venv/bin/python bench/eventstore_bench.py [--quick]

Creates fresh databases ``acci_bench`` (ACCI and raw psycopg, which writes into ACCI's own
``event_store.events`` table) and ``acci_bench_es`` (eventsourcing, default POSTGRES
persistence settings) on the server at ``ACCI_BENCH_SERVER_URL``, runs every case with each
side warmed up and the sides interleaved round by round, and prints one markdown table.

The machine this runs on is shared and noisy, so absolute figures mean little: read the ratios.
Each is the median over rounds of ACCI's figure divided by the other side's figure from the same
round (measured back to back), with the lowest and highest round in brackets. For ev/s rows
higher is better for ACCI; for ms rows lower is. Progress goes to stderr, the table to stdout.
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
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from domain.events import DomainEvent
from domain.registry import EventRegistry
from domain.registry import registry as domain_registry
from domain.tenant import CreateTenant, RenameTenant, Tenant, TenantState
from eventstore.db import XID8_OID, Xid8Loader, create_pool, ensure_database
from eventstore.migrate import migrate
from eventstore.records import NO_STREAM, START, NewEvent, RecordedEvent
from eventstore.repository import AggregateRepository
from eventstore.snapshots import SnapshotStore
from eventstore.store import EventStore

SERVER_URL = os.environ.get(
    "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ACCI_DB = "acci_bench"
ES_DB = "acci_bench_es"

TENANT = "bench"  # appends and the read_all seed
LOAD_TENANT = "bench-load"  # the 10,000-event Tenant aggregate (a Tenant's id is its tenant id)
ORDER_TENANT = "bench-order"  # the ordering check
AGGREGATE_TYPE = "Note"
EVENT_TYPE = "BenchNoted"
PAYLOAD_BYTES = 100
WRITERS = 8
PAGE = 1_000
LOAD_EVENTS = 10_000


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

    @classmethod
    def for_run(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(300, 400, 20, 20_000, 5, 25, 2)
        return cls(3_000, 4_000, 150, 100_000, 21, 100, 5)


# -- the bench's own event type, registered beside the domain's ------------------------------


def bench_registry() -> EventRegistry:
    """The domain's events plus BenchNoted, so one store can read every row in the table."""
    reg = EventRegistry()
    for event_type in sorted(domain_registry.event_types()):
        reg.register(domain_registry.event_class(event_type))

    @reg.register
    class BenchNoted(DomainEvent):
        event_type: ClassVar[str] = EVENT_TYPE
        text: str

    return reg


def payload(i: int) -> dict[str, Any]:
    """~100 bytes of JSON, different for every event: {"text": "0000000042 xxx..."}."""
    head = f"{i:010d} "
    return {"text": head + "x" * (PAYLOAD_BYTES - len('{"text":""}') - len(head))}


def new_events(start: int, count: int) -> list[NewEvent]:
    return [NewEvent(EVENT_TYPE, 1, payload(start + i)) for i in range(count)]


# -- the eventsourcing side ------------------------------------------------------------------


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


def es_env() -> dict[str, str]:
    """eventsourcing's POSTGRES persistence, default settings, on the bench database."""
    params = conninfo_to_dict(SERVER_URL)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": ES_DB,
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

    def __str__(self) -> str:
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
    """One row of the table; ``unit`` is "ev/s" (higher is better) or "ms" (lower is)."""

    case: str
    unit: str
    timings: dict[str, Timing] = field(default_factory=dict)  # by side: acci, es, raw
    targets: list[Target] = field(default_factory=list)
    cells: dict[str, str] = field(default_factory=dict)  # text standing in for a figure

    def figure(self, side: str) -> float | None:
        """The side's median per-round figure."""
        timing = self.timings.get(side)
        return None if timing is None else statistics.median(timing.per_round(self.unit))

    def ratio(self, other: str) -> Ratio | None:
        """ACCI's figure over the other side's, paired round by round so drift cancels out."""
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
        """Add a target, met when ``value`` is within the bound."""
        met = (
            value is not None
            and (at_least is None or value >= at_least)
            and (at_most is None or value <= at_most)
        )
        self.targets.append(Target(text, met))

    def median_ratio(self, other: str) -> float | None:
        ratio = self.ratio(other)
        return None if ratio is None else ratio.median

    def row(self) -> list[str]:
        def figure(side: str) -> str:
            if side in self.cells:
                return self.cells[side]
            value = self.figure(side)
            if value is None:
                return "-"
            return f"{value:,.0f} ev/s" if self.unit == "ev/s" else f"{value:,.2f} ms"

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
    app: EsBench
    raws: list[psycopg.AsyncConnection[Any]]
    pool: AsyncConnectionPool
    acci_url: str
    versions: dict[str, int] = field(default_factory=dict)  # ACCI and raw stream versions

    # 1. ---------------------------------------------------------------------------------------

    async def single_appends(self) -> Result:
        per_round = self.sizes.single_appends // self.sizes.rounds
        es_note = EsNote()
        self.app.save(es_note)

        async def acci(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for _i in range(n):
                events = new_events(0, 1)
                with clock:
                    await self._acci_append("acci-single", events)
            return n, clock.seconds

        async def es(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for i in range(n):
                es_note.note(payload(i)["text"])
                with clock:
                    self.app.save(es_note)
            return n, clock.seconds

        async def raw(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for _i in range(n):
                events = new_events(0, 1)
                with clock:
                    await self._raw_append(self.raws[0], "raw-single", events)
            return n, clock.seconds

        await self._warm_up({"acci": acci, "es": es, "raw": raw}, 50)
        t = await interleaved(self.sizes.rounds, {"acci": acci, "es": es, "raw": raw})
        return Result("1. single-event appends, 1 writer", "ev/s", t)

    # 2. ---------------------------------------------------------------------------------------

    async def concurrent_appends(self) -> Result:
        per_writer = self.sizes.concurrent_appends // self.sizes.rounds // WRITERS
        es_notes = [EsNote() for _ in range(WRITERS)]
        self.app.save(*es_notes)

        async def acci(_: int, n: int = per_writer) -> tuple[int, float]:
            async def writer(w: int) -> None:
                for i in range(n):
                    await self._acci_append(f"acci-w{w}", new_events(i, 1))

            t0 = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
            return n * WRITERS, time.perf_counter() - t0

        async def es(_: int, n: int = per_writer) -> tuple[int, float]:
            # eventsourcing is synchronous: one thread per writer, all started together.
            start = threading.Barrier(WRITERS + 1)
            errors: list[BaseException] = []

            def writer(note: EsNote) -> None:
                start.wait()
                try:
                    for i in range(n):
                        note.note(payload(i)["text"])
                        self.app.save(note)
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

        async def raw(_: int, n: int = per_writer) -> tuple[int, float]:
            async def writer(w: int) -> None:
                for i in range(n):
                    await self._raw_append(self.raws[w], f"raw-w{w}", new_events(i, 1))

            t0 = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))
            return n * WRITERS, time.perf_counter() - t0

        sides: dict[str, Side] = {"acci": acci, "es": es, "raw": raw}
        await self._warm_up(sides, 20)
        t = await interleaved(self.sizes.rounds, sides)
        result = Result(f"2. single-event appends, {WRITERS} writers", "ev/s", t)
        result.check(">= 3.5x eventsourcing", result.median_ratio("es"), at_least=3.5)
        result.check(">= 0.6x raw", result.median_ratio("raw"), at_least=0.6)
        return result

    # 3. ---------------------------------------------------------------------------------------

    async def batch_appends(self, batch: int = 100) -> Result:
        per_round = self.sizes.batch_appends // self.sizes.rounds
        es_note = EsNote()
        self.app.save(es_note)

        async def acci(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for i in range(n):
                events = new_events(i * batch, batch)
                with clock:
                    await self._acci_append("acci-batch", events)
            return n * batch, clock.seconds

        async def es(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for i in range(n):
                for j in range(batch):
                    es_note.note(payload(i * batch + j)["text"])
                with clock:
                    self.app.save(es_note)
            return n * batch, clock.seconds

        async def raw(_: int, n: int = per_round) -> tuple[int, float]:
            clock = Clock()
            for i in range(n):
                events = new_events(i * batch, batch)
                with clock:
                    await self._raw_append(self.raws[0], "raw-batch", events)
            return n * batch, clock.seconds

        sides: dict[str, Side] = {"acci": acci, "es": es, "raw": raw}
        await self._warm_up(sides, 8)
        t = await interleaved(self.sizes.rounds, sides)
        result = Result(f"3. {batch}-event appends", "ev/s", t)
        result.check(">= 1.0x raw", result.median_ratio("raw"), at_least=1.0)
        return result

    # 4. ---------------------------------------------------------------------------------------

    async def read_all(self) -> Result:
        n = self.sizes.read_events
        await self._seed_acci(n)
        self._seed_es(n)

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

        async def es(_: int) -> tuple[int, float]:
            read, start = 0, 1
            recorder = self.app.recorder
            decode = self.app.mapper.transcoder.decode
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

        sides: dict[str, Side] = {"acci": acci, "es": es, "raw": raw}
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

    def _seed_es(self, n: int) -> None:
        have = self.app.recorder.max_notification_id() or 0
        log(f"seeding eventsourcing: {have:,} events stored, {n:,} wanted")
        while have < n:
            note = EsNote()
            for i in range(999):
                note.note(payload(have + i)["text"])
            self.app.save(note)
            have += 1_000

    # 5. and 6. --------------------------------------------------------------------------------

    async def create_big_aggregates(self) -> uuid.UUID:
        """A Tenant of 10,000 events in ACCI (and raw's table), an EsNote of 10,000 in es."""
        tenant = Tenant(LOAD_TENANT, LOAD_TENANT)
        tenant.handle(CreateTenant(tenant_id=LOAD_TENANT, name=tenant_name(0)))
        for i in range(1, LOAD_EVENTS):
            tenant.handle(RenameTenant(tenant_id=LOAD_TENANT, name=tenant_name(i)))
        encode = self.store.registry.encode
        pending = [NewEvent(*encode(e)) for e in tenant.uncommitted_events]
        for start in range(0, len(pending), 1_000):
            await self.store.append(
                LOAD_TENANT,
                LOAD_TENANT,
                Tenant.aggregate_type,
                pending[start : start + 1_000],
                command_id=uuid.uuid4(),
                expected_version=start,
            )
        note = EsNote()
        for i in range(LOAD_EVENTS - 1):
            note.note(payload(i)["text"])
            if i % 1_000 == 998:
                self.app.save(note)
        self.app.save(note)
        return note.id

    async def load(self, es_id: uuid.UUID) -> list[Result]:
        loads = self.sizes.loads

        async def acci(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            tenant = await self.repo.load(Tenant, LOAD_TENANT, LOAD_TENANT)
            seconds = time.perf_counter() - t0
            assert tenant.version == LOAD_EVENTS, tenant.version
            return 1, seconds

        async def raw(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            state, version = await self._raw_fetch_and_fold()
            seconds = time.perf_counter() - t0
            assert version == LOAD_EVENTS and state.name == tenant_name(LOAD_EVENTS - 1)
            return 1, seconds

        async def es(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            note = self.app.repository.get(es_id)
            seconds = time.perf_counter() - t0
            assert note.version == LOAD_EVENTS, note.version
            return 1, seconds

        sides: dict[str, Side] = {"acci": acci, "es": es, "raw": raw}
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
        self.app.take_snapshot(es_id)
        loads *= 4  # each is short: more of them for a steadier median
        await self._warm_up_n(sides, 5)
        t = await interleaved(loads, sides)
        snap = Result(
            f"6. the same, snapshot at the head (median of {loads})",
            "ms",
            t,
        )
        snap.check("<= 1 ms", snap.figure("acci"), at_most=1.0)
        return [full, snap]

    async def _raw_fetch_and_fold(self) -> tuple[TenantState, int]:
        """ACCI's load minus ACCI: the snapshot row, the rows after it, decode, evolve."""
        conn = self.raws[0]
        cur = await conn.execute(
            RAW_SNAPSHOT, (LOAD_TENANT, LOAD_TENANT, Tenant.state_schema_version)
        )
        snapshot = await cur.fetchone()
        state, version = Tenant.initial_state(), 0
        if snapshot is not None:
            version, state = snapshot[0], TenantState.model_validate(snapshot[1])
        cur = await conn.execute(RAW_READ_STREAM, (LOAD_TENANT, LOAD_TENANT, version))
        decode, evolve = domain_registry.decode, Tenant.evolve
        for event_type, event_version, data in await cur.fetchall():
            state = evolve(state, decode(event_type, event_version, data))
            version += 1
        return state, version

    # 7. ---------------------------------------------------------------------------------------

    async def ordering(self) -> Result:
        """8 writers and a tailing reader while a transaction begun first commits last."""
        per_writer = self.sizes.order_appends
        await self.store.partitions.ensure(ORDER_TENANT)
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


# -- set-up ------------------------------------------------------------------------------------


def database_url(name: str) -> str:
    params = conninfo_to_dict(SERVER_URL)
    params["dbname"] = name
    return make_conninfo(**params)


def recreate_databases() -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        for name in (ACCI_DB, ES_DB):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ES_DB)))


async def run(sizes: Sizes) -> list[Result]:
    recreate_databases()
    acci_url = database_url(ACCI_DB)
    await ensure_database(acci_url)
    pool = create_pool(acci_url, min_size=WRITERS + 2, max_size=WRITERS + 2)
    await pool.open(wait=True)
    app = EsBench(env=es_env())
    raws = [await raw_connection(acci_url) for _ in range(WRITERS)]
    try:
        await migrate(pool)
        registry = bench_registry()
        store = EventStore(pool, registry=registry, max_events_per_append=1_000)
        repo = AggregateRepository(store, SnapshotStore(pool, partitions=store.partitions))
        await store.partitions.ensure(TENANT)
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
        return results
    finally:
        for conn in raws:
            await conn.close()
        app.close()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    args = parser.parse_args()
    sizes = Sizes.for_run(quick=args.quick)
    t0 = time.perf_counter()
    results = asyncio.run(run(sizes))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    print(markdown(results))


if __name__ == "__main__":
    main()
