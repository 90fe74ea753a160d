"""Snapshots: the policy on the command path, the snapshot job's throughput, loads with one.

Part 1, the policy on the command path: a command on a tenant with a long stream.

Every user command loads its tenant's aggregate. Without snapshots that load grows with the
tenant's stream; with the policy (``ACCI_SNAPSHOT_AFTER_EVENTS``) the first long load leaves a
snapshot behind and later ones start from the newest snapshot.

Measured through the command handler (load, decide, append: what ``RunCommand`` runs, without
Temporal's constant overhead), in fresh databases ``acci_bench_snapshots`` (part 1) and
``acci_bench_snapshots_job`` (part 2):

* baseline: ``RegisterUser`` on a fresh tenant (its tenant stream holds one event), p50 of N;
* the same command on a tenant whose stream holds 100,000 events (``--quick``: 20,000):
  with the policy on (the default, ``Settings().snapshot_after_events``: 50), the first command
  (which writes the snapshot) and then the p50 of N; with it off, the p50 of a few (each folds
  every event).

Target (issue 11): with the policy, p50 within 1.5x the fresh tenant's.

Part 2, the snapshot job: ``SnapshotBatch`` (the activity, run in Temporal's activity test
environment, no server) over 2,000 streams of 50 events each (``--quick``: 500), all past the
job's threshold: streams snapshotted per second, beside a plain load of the same streams (the
job's floor: it loads each one) in the same run. Then the load of one 10,000-event stream with a
snapshot at its head vs without (p50; target with a snapshot: <= 1 ms).

Part 3, the policy's threshold in steady state: a hot aggregate. Part 1 measures commands right
after a snapshot; a tenant that takes commands all day folds, on average, half the threshold's
events per load. One tenant per threshold (500, 100, 50, 25), each fresh, takes ``RenameTenant``
commands (``--quick``: 500 each, else 2,000), the thresholds taking turns command by command so
the machine's noise hits them alike. Per threshold: the p50 and mean latency of a command, this
process's CPU per command including the snapshot writes it leaves behind (waited for after each
command, so none runs during another threshold's) and the snapshots written; ratios against 500
(the default until 2026-12-02).

Run: ``.venv/bin/python bench/snapshots_bench.py [--quick]`` (``--steady-only``: part 3 alone).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import psycopg
from psycopg import sql
from temporalio.testing import ActivityEnvironment

from acci.activities.command_handler import CommandHandler
from acci.activities.models import SnapshotJobInput
from acci.activities.snapshot_activities import SnapshotActivities
from acci.domain import Tenant
from acci.domain.tenant_commands import CreateTenant, RenameTenant
from acci.domain.user_commands import RegisterUser
from acci.eventstore.db import create_pool, ensure_database
from acci.eventstore.records import NewEvent, StreamAppend
from acci.eventstore.repository import AggregateRepository
from acci.eventstore.snapshots import SnapshotStore
from acci.eventstore.store import EventStore
from acci.readmodels.schema import prepare_database
from acci.workers.settings import Settings

LONG = 10_000
SERVER = os.environ.get("ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432")
DB = "acci_bench_snapshots"
BATCH = 1_000
AFTER = Settings().snapshot_after_events  # the policy's default threshold


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def recreate(name: str) -> str:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    return f"{SERVER}/{name}"


async def register(handler: CommandHandler, tenant: str) -> float:
    user = f"u-{uuid.uuid4().hex[:12]}"
    command = RegisterUser(user_id=user, email=f"{user}@example.com", display_name="U")
    started = time.perf_counter()
    await handler.handle(tenant, command, command_id=uuid.uuid4())
    return time.perf_counter() - started


async def long_tenant(store: EventStore, handler: CommandHandler, events: int) -> str:
    """A tenant whose stream holds ``events`` events (renames), appended in batches."""
    tenant = f"t-long-{uuid.uuid4().hex[:8]}"
    await handler.handle(
        tenant, CreateTenant(tenant_id=tenant, name="Long"), command_id=uuid.uuid4()
    )
    done = 1
    while done < events:
        count = min(BATCH, events - done)
        rename = NewEvent("TenantRenamed", 1, {"old_name": "Long", "new_name": "Long"})
        await store.append(tenant, tenant, "Tenant", [rename] * count, command_id=uuid.uuid4())
        done += count
    return tenant


async def policy(url: str, quick: bool) -> None:
    events = 20_000 if quick else 100_000
    samples = 21 if quick else 51
    async with create_pool(url, min_size=2, max_size=4) as pool:
        store = EventStore(pool)
        snapshots = SnapshotStore(pool)
        on = AggregateRepository(store, snapshots, snapshot_after=AFTER)
        off = AggregateRepository(store, snapshots, snapshot_after=0)
        handler_on, handler_off = CommandHandler(store, on), CommandHandler(store, off)
        fresh = f"t-fresh-{uuid.uuid4().hex[:8]}"
        await handler_on.handle(
            fresh, CreateTenant(tenant_id=fresh, name="Fresh"), command_id=uuid.uuid4()
        )
        say(f"seeding a tenant with {events:,} events")
        long_on = await long_tenant(store, handler_on, events)
        long_off = await long_tenant(store, handler_off, events)
        for _ in range(5):  # warm-up
            await register(handler_on, fresh)
        say("measuring")
        base, with_policy, without = [], [], []
        first = await register(handler_on, long_on)  # folds everything, leaves a snapshot
        await on.drain()
        for _ in range(samples):  # interleaved: the machine's noise hits both alike
            base.append(await register(handler_on, fresh))
            with_policy.append(await register(handler_on, long_on))
            await on.drain()
        for _ in range(3):
            without.append(await register(handler_off, long_off))
    p50 = statistics.median(base)
    rows = [
        ("fresh tenant (baseline), p50", p50, None),
        (
            f"{events:,}-event tenant, first command (folds all, writes the snapshot)",
            first,
            first / p50,
        ),
        (
            f"{events:,}-event tenant, policy on ({AFTER}), p50",
            statistics.median(with_policy),
            statistics.median(with_policy) / p50,
        ),
        (
            f"{events:,}-event tenant, policy off, p50 of 3",
            statistics.median(without),
            statistics.median(without) / p50,
        ),
    ]
    print("| Case | RegisterUser through the handler | ÷ fresh tenant | Target |")
    print("| --- | --- | --- | --- |")
    for name, seconds, ratio in rows:
        target = ""
        if "policy on" in name:
            target = "<= 1.5x: PASS" if ratio is not None and ratio <= 1.5 else "<= 1.5x: MISS"
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        print(f"| {name} | {seconds * 1000:,.2f} ms | {shown} | {target or '-'} |")


async def seed_streams(store: EventStore, count: int, events: int) -> list[str]:
    """``count`` tenants whose streams hold ``events`` events each, in appends of many streams."""
    tenants = [f"t-job-{i:05d}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    created = NewEvent(
        "TenantCreated", 1, {"name": "J", "settings": {"max_users": 100, "features": {}}}
    )
    rename = NewEvent("TenantRenamed", 1, {"old_name": "J", "new_name": "J"})
    for first in range(0, count, 20):
        appends = [
            StreamAppend(t, t, "Tenant", (created, *[rename] * (events - 1)), uuid.uuid4())
            for t in tenants[first : first + 20]
        ]
        await store.append_many(appends)
    return tenants


async def job(url: str, quick: bool) -> None:
    streams, events = (500, 50) if quick else (2_000, 50)
    async with create_pool(url, min_size=2, max_size=4) as pool:
        store, snapshots = EventStore(pool), SnapshotStore(pool)
        repository = AggregateRepository(store, snapshots)
        say(f"seeding {streams:,} streams of {events} events")
        tenants = await seed_streams(store, streams, events)
        say("loading every stream (the job's floor)")
        started = time.perf_counter()
        for tenant in tenants:
            await repository.load(Tenant, tenant, tenant)
        loads = streams / (time.perf_counter() - started)
        say("running the snapshot job's batches")
        activities = SnapshotActivities(
            pool=pool, repository=repository, min_events=events // 2, keep=3
        )
        environment = ActivityEnvironment()
        request = SnapshotJobInput(streams_per_batch=500)
        started = time.perf_counter()
        written = 0
        while True:
            batch = await environment.run(activities.snapshot_batch, request)
            written += batch.written
            if batch.next_after is None:
                break
            request = request.model_copy(update={"after": batch.next_after})
        job_rate = written / (time.perf_counter() - started)
        say(f"loads of a {LONG:,}-event stream with and without a snapshot")
        long = await long_tenant(store, CommandHandler(store, repository), LONG)
        aggregate = await repository.load(Tenant, long, long)
        await repository.snapshot(aggregate)
        with_snapshot, without = [], []
        for _ in range(21):
            for use, into in ((True, with_snapshot), (False, without)):
                started = time.perf_counter()
                await repository.load(Tenant, long, long, use_snapshot=use)
                into.append(time.perf_counter() - started)
    with_p50, without_p50 = statistics.median(with_snapshot), statistics.median(without)
    print()
    print("| Case | Figure | Baseline (same run) | ÷ baseline | Target |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| snapshot job, {streams:,} streams of {events} events | {job_rate:,.0f} streams"
        f" snapshotted/s ({written:,}) | plain loads {loads:,.0f}/s | {job_rate / loads:.2f}x | - |"
    )
    target = "PASS" if with_p50 <= 0.001 else "MISS"
    print(
        f"| load of a {LONG:,}-event stream, snapshot at the head, p50 of 21 |"
        f" {with_p50 * 1000:.2f} ms | without: {without_p50 * 1000:,.1f} ms |"
        f" {with_p50 / without_p50:.3f}x | <= 1 ms: {target} |"
    )


THRESHOLDS = (500, 100, 50, 25)


async def rename(handler: CommandHandler, tenant: str, i: int) -> None:
    await handler.handle(
        tenant, RenameTenant(tenant_id=tenant, name=f"Hot {i}"), command_id=uuid.uuid4()
    )


async def steady(url: str, quick: bool) -> None:
    commands = 500 if quick else 2_000
    async with create_pool(url, min_size=2, max_size=4) as pool:
        store, snapshots = EventStore(pool), SnapshotStore(pool)
        sides = {}
        for threshold in THRESHOLDS:
            repository = AggregateRepository(store, snapshots, snapshot_after=threshold)
            handler = CommandHandler(store, repository)
            tenant = f"t-hot-{threshold}-{uuid.uuid4().hex[:6]}"
            await handler.handle(
                tenant, CreateTenant(tenant_id=tenant, name="Hot"), command_id=uuid.uuid4()
            )
            sides[threshold] = (tenant, handler, repository)
        say(f"{commands:,} commands on one tenant per threshold, taking turns")
        latency: dict[int, list[float]] = {t: [] for t in THRESHOLDS}
        cpu = dict.fromkeys(THRESHOLDS, 0.0)
        for i in range(commands):
            for threshold in THRESHOLDS[i % 4 :] + THRESHOLDS[: i % 4]:
                tenant, handler, repository = sides[threshold]
                cpu0, started = time.process_time(), time.perf_counter()
                await rename(handler, tenant, i)
                latency[threshold].append(time.perf_counter() - started)
                await repository.drain()
                cpu[threshold] += time.process_time() - cpu0
        written = {}
        async with pool.connection() as conn:
            for threshold, (tenant, _, _) in sides.items():
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM snapshots.aggregate_snapshots WHERE tenant_id = %s",
                        (tenant,),
                    )
                ).fetchone()
                written[threshold] = int(row[0]) if row else 0
    base_p50 = statistics.median(latency[500])
    base_cpu = cpu[500] / commands
    print()
    print(
        "| threshold | p50 | mean | CPU/command (this process) | ÷ 500: p50, CPU |"
        " snapshots written |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for threshold in THRESHOLDS:
        p50, per = statistics.median(latency[threshold]), cpu[threshold] / commands
        mean = statistics.mean(latency[threshold])
        print(
            f"| {threshold} | {p50 * 1000:.2f} ms | {mean * 1000:.2f} ms | {per * 1000:.3f} ms |"
            f" {p50 / base_p50:.2f}x, {per / base_cpu:.2f}x | {written[threshold]:,} |"
        )


async def main(quick: bool, *, steady_only: bool = False) -> None:
    parts = [(policy, DB), (job, f"{DB}_job"), (steady, f"{DB}_steady")]
    # One database per part: the job's scan sees only its own streams.
    for part, name in parts[2:] if steady_only else parts:
        url = recreate(name)
        await ensure_database(url)
        async with create_pool(url, min_size=1, max_size=1) as pool:
            await prepare_database(pool)
        await part(url, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 events, fewer samples")
    parser.add_argument("--steady-only", action="store_true", help="part 3 alone")
    args = parser.parse_args()
    asyncio.run(main(args.quick, steady_only=args.steady_only))
