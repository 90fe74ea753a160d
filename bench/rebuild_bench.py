"""A read model's rebuild from 0, against the live catch-up path and raw reads of the same events.

    .venv/bin/python bench/rebuild_bench.py [--events N] [--rounds R] [--keep] [--fresh] [--json]

Set-up (not measured): the database ``acci_bench_rebuild`` on ``ACCI_BENCH_SERVER_URL`` is
prepared as a worker prepares one (``prepare_database``: migrations, every read model's live
version) and loaded with N events (500,000) the way ``bench/readside_bench.py`` loads them, with
its generator (one tenant per ~330 events: 1,500 tenants for 500,000), ``append_many`` of 1,000
commands at a time, plus the seat events the command path writes beside the users'
(``UserSeatReserved`` on the tenant's stream before each ``UserRegistered``,
``UserSeatReleased`` after each ``UserDeactivated``). A database left by ``--keep`` that holds
exactly N events is used as it is (``--fresh``: always reload). It is dropped at the end unless
``--keep``.

Then, in R rounds (3) after one untimed read of every event (warm caches), the sides in pairs
whose order rotates round by round (and within a pair, who goes first alternates):

1. rebuild, for each built-in read model (tenants, users, tenant_activity): ``Rebuild(store,
   model, live + 1)``, ``start()`` (not timed), then ``project(budget=60)`` until caught up
   (timed: every event applied into the new version's tables); then ``validate_fold()`` (timed
   on its own: a fold of the event store into scratch tables, compared row by row), then
   ``abandon()`` (not timed: the new version dropped, the database as before);
2. the catch-up path, for each: ``ProjectionRunner(read_model(name).projection(), store)``,
   ``reset()`` (not timed: the live version's tables emptied, its checkpoint at 0), then
   ``catch_up(limit=1000, budget=60)`` until caught up (timed);
3. raw reads of the same events: ``EventStore.read_all`` from ``START`` in pages of 1,000
   (ACCI's decoding: rows to ``RecordedEvent``, upcasting), and the same statement
   (``global_order.READ_ALL``, gap-free, same ordering) on a pool connection with plain tuple
   rows (no decoding beyond psycopg's): the raw SQL baseline.

A figure is the median over rounds of N / seconds; a ratio is the median over rounds of the two
sides' same-round ratio, lowest and highest round in brackets. Targets: rebuild >= 0.8x the
catch-up path, rebuild >= 25,000 ev/s. The process's garbage collector is set up as the
worker's (``workers/process.py``), where a rebuild runs. The machine is shared and noisy: read
the ratios.
Progress goes to stderr; the markdown table and a JSON line to stdout (``--json``: only the
JSON line; the table goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from harness import database_url, recreate_database
from psycopg import sql
from readside_bench import Command, Sizes, commands, new_event, store_events, wait_visible

from acci.domain.tenant_events import UserSeatReleased, UserSeatReserved
from acci.eventstore.db import create_pool
from acci.eventstore.global_order import READ_ALL
from acci.eventstore.records import START
from acci.eventstore.store import EventStore
from acci.readmodels.checkpoints import CheckpointStore
from acci.readmodels.installed import read_model
from acci.readmodels.rebuild import Rebuild
from acci.readmodels.reports import BatchReport
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.schema import prepare_database
from acci.workers.process import tune_gc

DB = "acci_bench_rebuild"
MODELS = ("tenants", "users", "tenant_activity")
PAGE = 1_000  # read_all pages; the catch-up's batch limit (a rebuild's is the same, 1,000)
BUDGET = 60.0  # seconds per project() / catch_up() call
EVENTS_PER_TENANT = 333
TARGET_EVENTS_PER_SECOND = 25_000
TARGET_RATIO = 0.8  # rebuild over the catch-up path
READ_ALL_SIDE = "read_all"
RAW_SQL_SIDE = "raw SQL"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rebuild_side(name: str) -> str:
    return f"rebuild {name}"


def catch_up_side(name: str) -> str:
    return f"catch-up {name}"


# -- the events ----------------------------------------------------------------------------------


def with_seats(stream: Sequence[Command], total: int) -> list[Command]:
    """``stream`` with the seat events the command path appends beside the users' (on the
    tenant's stream, in the same command), cut to ``total`` events."""
    out: list[Command] = []
    for tenant, aggregate, kind, event in stream:
        if event.event_type == "UserRegistered":
            seat = new_event(UserSeatReserved(user_id=aggregate))
            out.append((tenant, tenant, "Tenant", seat))
        out.append((tenant, aggregate, kind, event))
        if event.event_type == "UserDeactivated":
            out.append((tenant, tenant, "Tenant", new_event(UserSeatReleased(user_id=aggregate))))
        if len(out) >= total:
            break
    return out[:total]


def generate(events: int) -> list[Command]:
    """``events`` events of ``readside_bench``'s generator, seats added (seed 42)."""
    tenants = max(10, events // EVENTS_PER_TENANT)
    # Only ``events`` and ``tenants`` are read by the generator; the rest is its part 2's.
    sizes = Sizes(events, tenants, 1, 0.0, 0, 0.0, 0, 0)
    stream = with_seats(commands(sizes, random.Random(42)), events)
    assert len(stream) == events, f"generated {len(stream):,} of {events:,} events"
    return stream


def stored_events(server_url: str, url: str) -> int | None:
    """How many events ``DB`` holds (None: no such database, or no event table)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        cur = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,))
        if cur.fetchone() is None:
            return None
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute("SELECT to_regclass('event_store.events') IS NOT NULL")
        row = cur.fetchone()
        if row is None or not row[0]:
            return None
        cur = conn.execute("SELECT count(*) FROM event_store.events")
        row = cur.fetchone()
        return None if row is None else int(row[0])


async def load(store: EventStore, events: int) -> dict[str, int]:
    """Generate and append ``events`` events; the mix (events by type)."""
    log(f"generating {events:,} events")
    stream = generate(events)
    mix = Counter(event.event_type for _, _, _, event in stream)
    log(f"storing {events:,} events for {len({t for t, _, _, _ in stream}):,} tenants")
    last = await store_events(store, stream)
    log("VACUUM ANALYZE")
    async with store.pool.connection() as conn:
        await conn.execute("VACUUM ANALYZE event_store.events")
    await wait_visible(store, last)
    return dict(mix.most_common())


async def event_mix(store: EventStore) -> dict[str, int]:
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event_type, count(*) FROM event_store.events GROUP BY 1 ORDER BY 2 DESC"
        )
        return {kind: int(n) for kind, n in await cur.fetchall()}


def drop_database(server_url: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


# -- one pass of each side -------------------------------------------------------------------------


async def read_all_pass(store: EventStore) -> int:
    """``EventStore.read_all`` from the start in pages of ``PAGE``; how many events."""
    after, n = START, 0
    while page := await store.read_all(after, limit=PAGE):
        n += len(page)
        after = page[-1].position
    return n


_RAW_READ_ALL = READ_ALL[(False, False)]  # the statement read_all runs, columns in its order


async def raw_sql_pass(store: EventStore) -> int:
    """The same statement as ``read_all``, page by page on a pool connection, plain tuple rows
    (ACCI's decoding left out); how many events."""
    tx, gp, n = 0, 0, 0
    while True:
        async with store.pool.connection() as conn:
            cur = await conn.execute(_RAW_READ_ALL, {"tx": str(tx), "gp": gp, "limit": PAGE})
            rows = await cur.fetchall()
        if not rows:
            return n
        n += len(rows)
        gp, tx = rows[-1][-2], rows[-1][-1]  # global_position, transaction_id


async def until_caught_up(step: Callable[[], Awaitable[BatchReport]], what: str) -> int:
    """Call ``step`` until its report is caught up; the events applied."""
    applied = 0
    while True:
        report = await step()
        applied += report.applied
        if report.failure is not None or report.paused:
            raise RuntimeError(f"{what}: {report.last_error or 'paused'} at {report.position}")
        if report.caught_up:
            return applied


@dataclass
class RebuildPass:
    seconds: float
    fold_seconds: float
    applied: int
    fold_equal: bool
    fold_detail: str


async def rebuild_pass(store: EventStore, name: str) -> RebuildPass:
    """Rebuild ``name`` into the version after the live one, from 0: timed projecting, timed
    fold validation, then the version abandoned."""
    live = (await CheckpointStore(store.pool).get(name)).version
    rebuild = Rebuild(store, read_model(name), live + 1)
    await rebuild.start()
    try:
        gc.collect()
        t0 = time.perf_counter()
        applied = await until_caught_up(
            lambda: rebuild.project(budget=BUDGET), f"rebuild of {name} v{live + 1}"
        )
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        comparisons = await rebuild.validate_fold()
        fold_seconds = time.perf_counter() - t0
    finally:
        await rebuild.abandon()
    detail = "; ".join(
        f"{c.table}: {c.found_rows:,} rows" + ("" if c.equal else f" != fold {c.expected_rows:,}")
        for c in comparisons
    )
    return RebuildPass(seconds, fold_seconds, applied, all(c.equal for c in comparisons), detail)


async def catch_up_pass(store: EventStore, name: str) -> tuple[float, int]:
    """The live projection reset and caught up from 0 (timed); seconds, events applied."""
    runner = ProjectionRunner(read_model(name).projection(), store)
    await runner.reset()
    gc.collect()
    t0 = time.perf_counter()
    applied = await until_caught_up(
        lambda: runner.catch_up(limit=PAGE, budget=BUDGET), f"catch-up of {name}"
    )
    return time.perf_counter() - t0, applied


# -- the rounds ------------------------------------------------------------------------------------


@dataclass
class Bench:
    store: EventStore
    events: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    fold_seconds: dict[str, list[float]] = field(default_factory=dict)
    fold_problems: list[str] = field(default_factory=list)
    fold_details: dict[str, str] = field(default_factory=dict)

    def pairs(self) -> list[tuple[str, str]]:
        raw = [(READ_ALL_SIDE, RAW_SQL_SIDE)]
        return raw + [(rebuild_side(m), catch_up_side(m)) for m in MODELS]

    async def side(self, side: str) -> float:
        """One timed pass of ``side``; its seconds."""
        if side in (READ_ALL_SIDE, RAW_SQL_SIDE):
            read = read_all_pass if side == READ_ALL_SIDE else raw_sql_pass
            gc.collect()
            t0 = time.perf_counter()
            n = await read(self.store)
            seconds = time.perf_counter() - t0
        elif side.startswith("rebuild "):
            name = side.removeprefix("rebuild ")
            done = await rebuild_pass(self.store, name)
            seconds, n = done.seconds, done.applied
            self.fold_seconds.setdefault(name, []).append(done.fold_seconds)
            self.fold_details[name] = done.fold_detail
            if not done.fold_equal:
                self.fold_problems.append(f"{name}: {done.fold_detail}")
            log(f"  {name}: fold validation {done.fold_seconds:.1f} s ({done.fold_detail})")
        else:
            seconds, n = await catch_up_pass(self.store, side.removeprefix("catch-up "))
        assert n == self.events, f"{side}: {n:,} of {self.events:,} events"
        return seconds

    async def rounds(self, rounds: int) -> None:
        log("warm-up: one untimed read_all of every event")
        await read_all_pass(self.store)
        pairs = self.pairs()
        self.seconds = {side: [] for pair in pairs for side in pair}
        for r in range(rounds):
            shift = r % len(pairs)
            for pair in pairs[shift:] + pairs[:shift]:
                for side in pair if r % 2 == 0 else reversed(pair):
                    seconds = await self.side(side)
                    self.seconds[side].append(seconds)
                    log(f"round {r + 1}: {side}: {self.events / seconds:,.0f} ev/s")

    def rate(self, side: str) -> float:
        return statistics.median(self.events / s for s in self.seconds[side])

    def ratio(self, side: str, over: str) -> tuple[float, float, float]:
        """Median, lowest and highest of the same-round ratio of ``side`` over ``over``."""
        ratios = [b / a for a, b in zip(self.seconds[side], self.seconds[over], strict=True)]
        return statistics.median(ratios), min(ratios), max(ratios)


# -- the report ------------------------------------------------------------------------------------


def ratio_text(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.2f}x ({r[1]:.2f}-{r[2]:.2f})"


def verdict(text: str, met: bool) -> str:
    return f"{text}: {'PASS' if met else 'MISS'}"


def model_lines(bench: Bench, name: str) -> list[list[str]]:
    """The rebuild's row and the catch-up's row of read model ``name``."""
    rb, cu = rebuild_side(name), catch_up_side(name)
    vs_catch_up = bench.ratio(rb, cu)
    rate = bench.rate(rb)
    target = ", ".join(
        [
            verdict(f">= {TARGET_RATIO}x catch-up", vs_catch_up[0] >= TARGET_RATIO),
            verdict(f">= {TARGET_EVENTS_PER_SECOND:,} ev/s", rate >= TARGET_EVENTS_PER_SECOND),
        ]
    )
    fold = statistics.median(bench.fold_seconds[name])
    rebuild = [
        f"rebuild {name} from 0 (validate_fold: {fold:.1f} s, {bench.events / fold:,.0f} ev/s)",
        f"{rate:,.0f}",
        ratio_text(vs_catch_up),
        ratio_text(bench.ratio(rb, READ_ALL_SIDE)),
        ratio_text(bench.ratio(rb, RAW_SQL_SIDE)),
        target,
    ]
    catch_up = [
        f"catch-up {name} from 0 (reset, catch_up limit {PAGE:,})",
        f"{bench.rate(cu):,.0f}",
        "-",
        ratio_text(bench.ratio(cu, READ_ALL_SIDE)),
        ratio_text(bench.ratio(cu, RAW_SQL_SIDE)),
        "-",
    ]
    return [rebuild, catch_up]


def table(bench: Bench) -> str:
    header = ["Case", "ev/s (median)", "÷ catch-up", "÷ read_all", "÷ raw SQL", "Target"]
    raw = f"{bench.rate(RAW_SQL_SIDE):,.0f}"
    read_all = f"{bench.rate(READ_ALL_SIDE):,.0f}"
    over_raw = ratio_text(bench.ratio(READ_ALL_SIDE, RAW_SQL_SIDE))
    lines = [
        header,
        ["---"] * len(header),
        [f"raw SQL: read_all's statement, pages of {PAGE:,}", raw, "-", "-", "-", "-"],
        [f"EventStore.read_all, pages of {PAGE:,}", read_all, "-", "-", over_raw, "-"],
    ]
    for name in MODELS:
        lines += model_lines(bench, name)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def summary(bench: Bench, rounds: int, extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON line: every figure, ratio and the run's facts."""
    out: dict[str, Any] = {"bench": "rebuild", "events": bench.events, "rounds": rounds}
    out["read_all_ev_s"] = round(bench.rate(READ_ALL_SIDE))
    out["raw_sql_ev_s"] = round(bench.rate(RAW_SQL_SIDE))
    for name in MODELS:
        rb, cu = rebuild_side(name), catch_up_side(name)
        fold = statistics.median(bench.fold_seconds[name])
        out[name] = {
            "rebuild_ev_s": round(bench.rate(rb)),
            "catch_up_ev_s": round(bench.rate(cu)),
            "rebuild_over_catch_up": round(bench.ratio(rb, cu)[0], 3),
            "rebuild_over_read_all": round(bench.ratio(rb, READ_ALL_SIDE)[0], 3),
            "rebuild_over_raw_sql": round(bench.ratio(rb, RAW_SQL_SIDE)[0], 3),
            "validate_fold_s": round(fold, 2),
            "validate_fold_ev_s": round(bench.events / fold),
            "rebuild_s": [round(s, 2) for s in bench.seconds[rb]],
            "catch_up_s": [round(s, 2) for s in bench.seconds[cu]],
        }
    out["fold_equal"] = not bench.fold_problems
    return out | extra


# -- main ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    events: int
    rounds: int
    keep: bool
    fresh: bool
    json: bool


async def prepared(server_url: str, url: str, options: Options) -> tuple[bool, float]:
    """The database holding ``options.events`` events, loaded if it has to be: whether it was
    loaded, and the seconds the load took."""
    found = None if options.fresh else stored_events(server_url, url)
    if found == options.events:
        log(f"{DB} holds {found:,} events already: no load (--fresh reloads)")
        async with create_pool(url, min_size=1, max_size=1) as pool:
            await prepare_database(pool)
        return False, 0.0
    if found is not None:
        log(f"{DB} holds {found:,} events, not {options.events:,}: reloading")
    t0 = time.perf_counter()
    recreate_database(server_url, DB)
    async with create_pool(url, min_size=1, max_size=2) as pool:
        await prepare_database(pool)
        await load(EventStore(pool), options.events)
    seconds = time.perf_counter() - t0
    log(f"loaded in {seconds:.0f} s")
    return True, seconds


async def run(options: Options) -> tuple[str, dict[str, Any]]:
    server_url = os.environ.get(
        "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    url = database_url(server_url, DB)
    try:
        loaded, load_seconds = await prepared(server_url, url, options)
        async with create_pool(url, min_size=2, max_size=8) as pool:
            store = EventStore(pool)
            mix = await event_mix(store)
            bench = Bench(store, sum(mix.values()))
            t0 = time.perf_counter()
            await bench.rounds(options.rounds)
            rounds_seconds = time.perf_counter() - t0
    finally:
        if not options.keep:
            drop_database(server_url)
            log(f"dropped {DB}")
    extra = {
        "loaded": loaded,
        "load_s": round(load_seconds, 1),
        "rounds_s": round(rounds_seconds, 1),
        "kept": options.keep,
        "mix": mix,
    }
    shares = ", ".join(f"{kind} {n / bench.events:.1%}" for kind, n in mix.items())
    notes = [
        f"Events: {bench.events:,} ({shares}).",
        "Load: "
        + (f"{load_seconds:.0f} s (generated and appended)." if loaded else "none (cached)."),
        f"Rounds: {options.rounds}, {rounds_seconds:.0f} s.",
        "validate_fold: "
        + ("every table equal to the fold" if not bench.fold_problems else "DIFFERS")
        + f" ({'; '.join(bench.fold_details.values())}).",
    ]
    text = table(bench) + "\n\n" + "\n".join(f"- {note}" for note in notes)
    return text, summary(bench, options.rounds, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000, help="events stored (500,000)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (3)")
    parser.add_argument("--keep", action="store_true", help=f"keep {DB} for the next run")
    parser.add_argument("--fresh", action="store_true", help=f"reload {DB} even if it is right")
    parser.add_argument("--json", action="store_true", help="only the JSON line on stdout")
    args = parser.parse_args()
    options = Options(args.events, args.rounds, args.keep, args.fresh, args.json)
    tune_gc()  # as `acci worker` does once its modules are imported (workers/process.py)
    t0 = time.perf_counter()
    text, figures = asyncio.run(run(options))
    figures["total_s"] = round(time.perf_counter() - t0, 1)
    log(f"done in {figures['total_s']:.0f} s")
    print(text, file=sys.stderr if options.json else sys.stdout)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
