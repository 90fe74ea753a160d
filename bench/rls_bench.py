"""What row-level security costs the command path: appends and loads, before and with it.

Two sides run interleaved, round after round, in one process on one database:

- **before**: the code path without tenant isolation: the tables' owner (row-level security
  does not apply), and the append and load statements of commit ``BEFORE`` (read from git; the
  same columns as today's, without the tenant scope), run by today's code.
- **rls**: the command path as it is: the ``acci_app`` role, whose policies filter every row,
  each statement setting its transaction's tenant itself.

Each op is a single-event append to one of 10 tenants' streams, or a load (the aggregate load's
statement: newest snapshot and the events after it) of a 50-event stream. Reported: the median
per-op time of each side and their ratio (rls / before).

    .venv/bin/python bench/rls_bench.py [--rounds 12] [--ops 300]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable

from harness import database_url, recreate_database
from psycopg_pool import AsyncConnectionPool

from acci.eventstore import append as append_module
from acci.eventstore import loading as loading_module
from acci.eventstore.db import create_pool
from acci.eventstore.loading import read_tail
from acci.eventstore.records import NewEvent
from acci.eventstore.store import EventStore
from acci.readmodels.schema import prepare_database
from acci.workers.urls import app_database_url

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "acci_bench_rls"
TENANTS = [f"tenant-{i}" for i in range(10)]
LOADED_EVENTS = 50

Op = Callable[[int], Awaitable[None]]


# The statements without row-level security: the event store as the encryption work left it
# (with its sealed-id column), before the statements scoped themselves to a tenant.
BEFORE = "cef91e2"


def statement_before(path: str, name: str) -> str:
    """The string constant ``name`` of module ``path`` as it was at ``BEFORE``."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:{path}"], check=True, capture_output=True, text=True
    ).stdout
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name:
            assert node.value is not None
            value = ast.literal_eval(node.value)
            assert isinstance(value, str)
            return value
    raise LookupError(f"{name} not found in {path} at {BEFORE}")


STATEMENTS = {
    "before": (
        statement_before("eventstore/append.py", "_INSERT"),
        statement_before("eventstore/loading.py", "LOAD"),
    ),
    "rls": (append_module._INSERT, loading_module.LOAD),
}


def event(i: int) -> NewEvent:
    return NewEvent("TenantRenamed", 1, {"old_name": f"name {i}", "new_name": f"name {i + 1}"}, {})


async def fill(store: EventStore) -> None:
    for tenant in TENANTS:
        await store.append(
            tenant,
            "loaded",
            "Tenant",
            [event(i) for i in range(LOADED_EVENTS)],
            command_id=uuid.uuid4(),
        )


def ops(store: EventStore, pool: AsyncConnectionPool, side: str) -> dict[str, Op]:
    async def append(i: int) -> None:
        tenant = TENANTS[i % len(TENANTS)]
        await store.append(tenant, f"{side}-{i}", "Tenant", [event(i)], command_id=uuid.uuid4())

    async def load(i: int) -> None:
        tail = await read_tail(
            pool, TENANTS[i % len(TENANTS)], "loaded", "Tenant", schema_version=None
        )
        assert len(tail.rows) == LOADED_EVENTS

    return {"append": append, "load": load}


async def timed(op: Op, start: int, count: int, *, side: str) -> float:
    """Median seconds per op over ``count`` ops, with ``side``'s statements."""
    append_module._INSERT, loading_module.LOAD = STATEMENTS[side]
    try:
        times = []
        for i in range(start, start + count):
            began = time.perf_counter()
            await op(i)
            times.append(time.perf_counter() - began)
        return statistics.median(times)
    finally:
        append_module._INSERT, loading_module.LOAD = STATEMENTS["rls"]


async def run(rounds: int, count: int) -> dict[str, dict[str, float]]:
    recreate_database(SERVER, DB)
    url = database_url(SERVER, DB)
    async with create_pool(url, min_size=2, max_size=4) as owner:
        await prepare_database(owner)
        async with create_pool(app_database_url(url, None), min_size=2, max_size=4) as app:
            await fill(EventStore(owner))
            sides = {
                "before": ops(EventStore(owner), owner, "before"),
                "rls": ops(EventStore(app), app, "rls"),
            }
            medians: dict[str, dict[str, list[float]]] = {
                name: {"append": [], "load": []} for name in sides
            }
            for r in range(rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for name in order:
                    for kind, op in sides[name].items():
                        medians[name][kind].append(await timed(op, r * count, count, side=name))
    return {
        name: {kind: statistics.median(values) for kind, values in kinds.items()}
        for name, kinds in medians.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--ops", type=int, default=300)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds, args.ops))
    print("| op | before (owner, no RLS) | acci_app with RLS | ratio |")
    print("|---|---|---|---|")
    for kind in ("append", "load"):
        before, rls = result["before"][kind], result["rls"][kind]
        print(f"| {kind} | {before * 1e3:.3f} ms | {rls * 1e3:.3f} ms | {rls / before:.2f}x |")


if __name__ == "__main__":
    main()
