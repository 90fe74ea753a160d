"""The store's JSON parser: ``json.loads`` (before) against pydantic's ``from_json`` (now), on
the catch-up path, in one process.

    .venv/bin/python bench/json_loader_bench.py [--events N] [--rounds R]

The database ``acci_bench_json`` on ``ACCI_BENCH_SERVER_URL`` is made afresh and loaded with N
events (20,000) for 50 tenants by ``bench/readside_bench.py``'s generator (not measured). Then,
in R rounds (4) whose order alternates: each built-in projection alone, and all three through
one shared log, reset and caught up from 0 (``ProjectionRunner.catch_up``, transactions of
``BACKLOG_BATCH``, the query cache invalidated after each commit as the worker does), once with
the pool's ``json``/``jsonb`` loader set to ``json.loads`` and once with ``eventstore.db``'s
``json_loads`` (each side its own pool, made with that loader). Figures: the median events/s of
each side; ratio: the median of the rounds' now/before ratios (lowest-highest in brackets).
The database is dropped at the end. The process's garbage collector is set up as the worker's
(``workers/process.py``).
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
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
from harness import database_url, recreate_database
from psycopg import sql
from readside_bench import Sizes, commands, store_events, wait_visible

import acci.eventstore.db as db
from acci.readmodels.installed import default_projections
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.shared_log import SharedLog
from acci.readmodels.tenancy import TENANCY
from acci.readmodels.waiting import BACKLOG_BATCH
from acci.workers.process import tune_gc
from acci.workers.runtime import open_event_store, query_cache
from acci.workers.settings import Settings

DB = "acci_bench_json"
NOW: Callable[[Any], Any] = db.json_loads
SIDES: dict[str, Callable[[Any], Any]] = {"before": json.loads, "now": NOW}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def catch_up(settings: Settings, side: str, names: list[str]) -> float:
    """Events/s of one catch-up from 0 of ``names`` on a pool whose JSON loader is ``side``'s."""
    db.json_loads = SIDES[side]  # read by each connection's configure: a pool of its own
    try:
        async with open_event_store(settings) as rt, query_cache(settings) as cache:
            shared = SharedLog(rt.store)
            runners = []
            for projection in default_projections():
                if projection.name in names:

                    async def invalidate(tenants: set[str], name: str = projection.name) -> None:
                        await cache.invalidate(name, tenants)

                    runners.append(
                        ProjectionRunner(
                            projection, rt.store, on_committed=invalidate, shared_log=shared
                        )
                    )
            for runner in runners:
                await runner.reset()
            t0 = time.perf_counter()
            reports = await asyncio.gather(*(r.catch_up(limit=BACKLOG_BATCH) for r in runners))
            seconds = time.perf_counter() - t0
    finally:
        db.json_loads = NOW
    assert all(r.caught_up and r.failure is None for r in reports), reports
    return reports[0].applied / seconds


async def run(events: int, rounds: int) -> None:
    server = os.environ.get(
        "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    recreate_database(server, DB)
    settings = Settings(
        database_url=database_url(server, DB),  # type: ignore[arg-type]
        cache_prefix=f"bench-json-{uuid.uuid4().hex[:8]}",
        metrics_port=0,
    )
    sizes = replace(Sizes.for_run(quick=True), events=events, tenants=50)
    async with open_event_store(settings) as rt:
        log(f"storing {events:,} events (not measured)")
        last = await store_events(rt.store, commands(sizes, random.Random(42)))
        async with rt.store.pool.connection() as conn:
            await conn.execute("VACUUM ANALYZE event_store.events")
        await wait_visible(rt.store, last)
    built_in = [m.projection.name for m in TENANCY.read_models]
    cases = {name: [name] for name in built_in}
    cases["all three, one shared log"] = built_in
    figures: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for case, names in cases.items():
            order = ["before", "now"] if r % 2 == 0 else ["now", "before"]
            for side in order:
                rate = await catch_up(settings, side, names)
                figures.setdefault((case, side), []).append(rate)
                log(f"round {r + 1}: {case}, {side}: {rate:,.0f} ev/s")
    print("| catch-up from 0 | json.loads (before) | from_json (now) | now ÷ before |")
    print("| --- | --- | --- | --- |")
    for case in cases:
        before, now = figures[(case, "before")], figures[(case, "now")]
        ratios = [n / b for b, n in zip(before, now, strict=True)]
        print(
            f"| {case} | {statistics.median(before):,.0f} ev/s | {statistics.median(now):,.0f}"
            f" ev/s | {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    log("done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events stored (20,000)")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds (4)")
    args = parser.parse_args()
    tune_gc()  # as `acci worker` does once its modules are imported (workers/process.py)
    asyncio.run(run(args.events, args.rounds))


if __name__ == "__main__":
    main()
