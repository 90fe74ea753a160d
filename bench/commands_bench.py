"""ACCI's command workflow against a bare one-local-activity workflow, on the same dev server.

    .venv/bin/python bench/commands_bench.py [--quick]

In one process: a Temporal dev server (in memory, then again over a SQLite file), ACCI's worker
(``running_worker``, no projections) and a second worker running ``BareWorkflow`` (one no-op
local activity), on the same client and data converter, plus ACCI's direct path
(``CommandHandler.handle`` and ``EventPublisher``, no Temporal) for reference. ACCI's commands
are ``RenameTenant`` on tenants created in a set-up phase (so every append is a steady-state
one, partitions made), command i going to tenant i % C: at concurrency C each lane has a tenant
of its own and never conflicts. The database ``acci_bench_cmd`` on ``ACCI_BENCH_SERVER_URL`` is
dropped and created afresh.

ACCI's side is ``execute_command`` as it stands: one run of ``CommandWorkflow`` per command, one
local activity (``RunCommand``: validate, handle, publish), its search attributes set by
``start_command`` at the start (so the run upserts none), its module passed through the workflow
sandbox (``workers.worker.SANDBOX_PASSTHROUGH``), started with ``request_eager_start=True``, so
the server hands the first workflow task straight back to the worker in this process. To compare
like with like, the bare workflow is started eagerly too, on the same client, and its module (this
file) is passed through the sandbox as well. The process's garbage collector is set up as
``acci worker`` sets up its own (``workers/process.py``), for both workers alike.

What-if rows (fewer against SQLite) measure ACCI's own workflow and activity, ACCI's code
unchanged, started or run differently; each one's "what-if ÷ ACCI" column is what ACCI's choice
buys (or, for "unsandboxed", would buy): "without eager start" (``request_eager_start=False``;
its bare column is the bare workflow started without eager start as well), "module re-imported"
(a worker with the SDK's default sandbox, which imports the workflow's module afresh for every
run), "attributes upserted" (started without search attributes, as a plain ``temporal workflow
start`` is, so that the workflow upserts them: two more history events), and "unsandboxed" (a
worker running the workflow outside the sandbox, ``UnsandboxedWorkflowRunner``; the bare
workflow stays sandboxed). History shapes (events, workflow tasks, markers, upserts) and how
many starts the server took eagerly are listed under the table.

The machine this runs on is shared and noisy, so absolute figures mean little: read the ratios.
The sides run back to back, round by round, rotating who goes first, each starting once the dev
server is idle again; each ratio is a side's figure over the other's, pooled over the rounds,
with the lowest and highest round's ratio in brackets. CPU is this process's (client, all
workers, direct path) and the dev server's, per command, counted until the server is idle after
the side's commands. Progress (each round's cmd/s per side) goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness import (
    WarningCounter,
    database_url,
    dev_server,
    percentile,
    recreate_database,
)
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from acci.activities.command_activities import CommandActivities, parse
from acci.activities.command_handler import CommandHandler
from acci.activities.models import CommandInput, command_workflow_id
from acci.domain import aggregate_for_command
from acci.domain.principals import Principal
from acci.eventstore.audit import AuditLog
from acci.eventstore.errors import MessagingError
from acci.eventstore.messaging.publisher import EventPublisher
from acci.workers.process import tune_gc
from acci.workers.runtime import EventStoreRuntime, open_event_store
from acci.workers.settings import Settings
from acci.workers.temporal_client import command_result, execute_command, start_command
from acci.workers.worker import running_worker, workflow_runner
from acci.workflows.command import CommandWorkflow, command_search_attributes

DB = "acci_bench_commands"
# The benchmark's commands are sent by a service principal (it acts as the system).
BENCH = Principal.service("bench")
# What-if variants measured against each server (fewer against SQLite, to keep the run short).
WHATIFS = {
    "in-memory": (
        "without eager start",
        "module re-imported",
        "attributes upserted",
        "unsandboxed",
    ),
    "SQLite": ("without eager start",),
}
# The side a what-if is compared with in its "bare" column, where that is not plain "bare".
BASELINES = {"without eager start": "bare, without eager start"}
STEP_TIMEOUT = timedelta(seconds=30)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the baseline: a workflow that runs one no-op local activity ------------------------------


@activity.defn
async def noop(x: str) -> str:
    return x


@workflow.defn
class BareWorkflow:
    @workflow.run
    async def run(self, x: str) -> str:
        return await workflow.execute_local_activity(noop, x, start_to_close_timeout=STEP_TIMEOUT)


def passthrough_runner() -> SandboxedWorkflowRunner:
    """The default sandbox, except that it does not re-run this file for every workflow run.

    It would otherwise (a workflow's module is re-imported per run): ~10 ms of CPU a run for
    this file's imports and classes. ACCI's worker passes its workflow's module through as well
    (``workers.worker.SANDBOX_PASSTHROUGH``), so both sides are measured alike.
    """
    name = BareWorkflow.__module__
    if name == "__main__":  # run as a script: the sandbox imports it as __temporal_main__
        name = "__temporal_main__"
        sys.modules.setdefault(name, sys.modules["__main__"])
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(name)
    )


# -- sizes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each case does; --quick shrinks everything."""

    concurrent: int  # commands per side at `concurrency`, over all rounds
    concurrency: int  # lanes, and tenants
    sequential: int  # commands per side at concurrency 1, over all rounds
    rounds: int  # interleaved rounds per case

    @classmethod
    def for_run(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(concurrent=100, concurrency=20, sequential=30, rounds=2)
        return cls(concurrent=500, concurrency=50, sequential=100, rounds=4)


# -- timing ------------------------------------------------------------------------------------


def cpu_seconds() -> tuple[float, float]:
    """CPU time used so far by this process, and by its child processes (the dev server)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = 0.0
    tasks = Path(f"/proc/{os.getpid()}/task")
    for pid in {p for t in tasks.iterdir() for p in (t / "children").read_text().split()}:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return usage.ru_utime + usage.ru_stime, children


@dataclass
class Sample:
    """One side's commands in one round: each one's latency, the wall time, the CPU time."""

    latencies: list[float]
    seconds: float
    cpu_self: float
    cpu_server: float


METRICS = {
    "cmd/s": "cmd/s",
    "p50": "p50 ms",
    "p99": "p99 ms",
    "cpu": "CPU ms/cmd, this process",
    "server": "CPU ms/cmd, dev server",
}


@dataclass
class Runs:
    """One side's rounds of a case."""

    samples: list[Sample] = field(default_factory=list)

    def figure(self, metric: str, samples: Sequence[Sample] | None = None) -> float:
        """A metric over all rounds (or the given ones)."""
        samples = self.samples if samples is None else samples
        count = sum(len(s.latencies) for s in samples)
        if metric == "cmd/s":
            return count / sum(s.seconds for s in samples)
        if metric == "cpu":
            return sum(s.cpu_self for s in samples) * 1_000 / count
        if metric == "server":
            return sum(s.cpu_server for s in samples) * 1_000 / count
        q = {"p50": 50, "p99": 99}[metric]
        return percentile([t for s in samples for t in s.latencies], q) * 1_000


Send = Callable[[int], Awaitable[str]]  # sends command number i; returns its workflow id


async def run_lanes(send: Send, first: int, count: int, lanes: int) -> Sample:
    """Commands first..first+count-1, lane k sending those with i % lanes == k, in order."""
    latencies: list[float] = []

    async def lane(k: int) -> None:
        for i in range(first + k, first + count, lanes):
            t0 = time.perf_counter()
            await send(i)
            latencies.append(time.perf_counter() - t0)

    await server_idle()  # not slowed down by what the side before left the server to do
    cpu0, server0 = cpu_seconds()
    t0 = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(lanes)))
    seconds = time.perf_counter() - t0
    # The server's work for these runs that outlives them (visibility, clean-up) is theirs.
    await server_idle()
    cpu1, server1 = cpu_seconds()
    return Sample(latencies, seconds, cpu1 - cpu0, server1 - server0)


# The dev server counts as idle once it used under 10 % of a core over a window (CPU time is
# counted in 10 ms ticks). Without this wait, the side right after the warm-up (ACCI's, in the
# first round) ran beside the server's backlog of the warm-up's hundreds of runs: ACCI's side
# measured slower than every what-if of its own code, with one round at 0.31x bare.
IDLE_WINDOW = 0.2
IDLE_CPU = 0.02


async def server_idle(*, within: float = 10.0) -> None:
    """Wait until the dev server is idle, or ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    _, before = cpu_seconds()
    while time.monotonic() < deadline:
        await asyncio.sleep(IDLE_WINDOW)
        _, now = cpu_seconds()
        if now - before < IDLE_CPU:
            return
        before = now


async def interleaved(
    sides: dict[str, Send], *, total: int, lanes: int, rounds: int
) -> dict[str, Runs]:
    """Each side sends total/rounds commands per round; who goes first rotates every round."""
    names = list(sides)
    runs = {name: Runs() for name in names}
    per_round = total // rounds
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            sample = await run_lanes(sides[name], r * per_round, per_round, lanes)
            runs[name].samples.append(sample)
            log(f"round {r + 1}/{rounds}, {name}: {per_round / sample.seconds:.1f} cmd/s")
    return runs


async def warm_up(sides: dict[str, Send], *, count: int, lanes: int) -> None:
    for send in sides.values():
        await run_lanes(send, 0, count, lanes)


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    text: str
    met: bool

    def __str__(self) -> str:
        return f"{self.text}: {'PASS' if self.met else 'MISS'}"


@dataclass
class Result:
    """A case's rows: ``subject`` (ACCI, or a what-if) against the sides of the same rounds.

    ``baseline`` is the bare side it is compared with: the bare workflow started as it is.
    """

    case: str
    runs: dict[str, Runs]
    subject: str = "acci"
    baseline: str = "bare"
    targets: dict[str, list[Target]] = field(default_factory=dict)  # by metric

    def figure(self, side: str, metric: str) -> float | None:
        if side not in self.runs or (side == "direct" and metric == "server"):
            return None  # the direct path does not use Temporal
        return self.runs[side].figure(metric)

    def ratio(self, side: str, other: str, metric: str) -> float | None:
        mine, theirs = self.figure(side, metric), self.figure(other, metric)
        if side == other or mine is None or theirs is None:
            return None
        return mine / theirs

    def check(self, metric: str, text: str, bound: float, *, at_most: bool) -> None:
        """A target on ACCI's figure over bare's: met when at most/at least ``bound``."""
        value = self.ratio("acci", "bare", metric)
        met = value is not None and (value <= bound if at_most else value >= bound)
        self.targets.setdefault(metric, []).append(Target(text, met))

    def ratio_cell(self, other: str, metric: str) -> str:
        value = self.ratio(self.subject, other, metric)
        if value is None:
            return "-"
        text = f"{value:.2f}x"
        if metric in ("cmd/s", "p50"):
            mine, theirs = self.runs[self.subject], self.runs[other]
            ratios = sorted(
                mine.figure(metric, [a]) / theirs.figure(metric, [b])
                for a, b in zip(mine.samples, theirs.samples, strict=True)
            )
            text += f" ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        return text

    def rows(self) -> list[list[str]]:
        out = []
        for n, (metric, unit) in enumerate(METRICS.items()):
            cells = [self.case if n == 0 else "", unit]
            for side in (self.subject, self.baseline, "direct"):
                value = self.figure(side, metric)
                cells.append("-" if value is None else f"{value:,.1f}")
            others = (self.baseline, "direct", "acci")
            cells += [self.ratio_cell(other, metric) for other in others]
            cells.append("; ".join(map(str, self.targets.get(metric, []))))
            out.append(cells)
        return out


def markdown(results: Sequence[Result], notes: Sequence[str]) -> str:
    header = [
        "Case",
        "Metric",
        "ACCI (or what-if)",
        "bare",
        "direct",
        "÷ bare",
        "÷ direct",
        "what-if ÷ ACCI",
        "Target",
    ]
    rows = [header, ["---"] * len(header)]
    for result in results:
        rows += result.rows()
    table = "\n".join("| " + " | ".join(cells) + " |" for cells in rows)
    return table + "\n\n" + "\n".join(f"- {note}" for note in notes)


# -- the sides ---------------------------------------------------------------------------------


def rename(tenants: Sequence[str], i: int, side: str) -> CommandInput:
    """Command number i of a side: rename tenant i % len(tenants) to a name never used."""
    tenant = tenants[i % len(tenants)]
    return CommandInput(
        command_id=uuid.uuid4(),
        tenant_id=tenant,
        command_type="RenameTenant",
        payload={"name": f"{tenant} {side} {uuid.uuid4().hex}"},
        principal=BENCH,
    )


@dataclass
class Starts:
    """How many runs each side started, and how many of them the server started eagerly."""

    runs: Counter[str] = field(default_factory=Counter)
    eager: Counter[str] = field(default_factory=Counter)

    def record(self, side: str, handle: WorkflowHandle[Any, Any]) -> None:
        self.runs[side] += 1
        # Set by the SDK's client on the handle: the start's response carried the first task.
        self.eager[side] += bool(getattr(handle, "__temporal_eagerly_started", False))

    def note(self, label: str) -> str:
        counts = "; ".join(f"{side}: {self.eager[side]}/{n}" for side, n in self.runs.items())
        return f"{label}, runs started eagerly: {counts}."


def command_side(
    client: Client,
    task_queue: str,
    tenants: Sequence[str],
    starts: Starts,
    name: str,
    *,
    eager: bool = True,
    attributes: bool = True,
) -> Send:
    """Commands sent as ``execute_command`` sends them, or the same without eager start, or
    without search attributes at the start (as a plain ``temporal workflow start`` sends them)."""

    async def send(i: int) -> str:
        command = rename(tenants, i, name)
        if eager and attributes:
            handle = (await start_command(client, command, task_queue=task_queue)).handle
        else:  # start_command's start, with eager start or the search attributes left out
            handle = await client.start_workflow(
                CommandWorkflow.run,
                command,
                id=command_workflow_id(command.command_id),
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=(
                    command_search_attributes(command, aggregate_id=command.tenant_id)
                    if attributes
                    else None
                ),
                request_eager_start=eager,
            )
        starts.record(name, handle)
        result = await command_result(handle)
        assert len(result.event_ids) == 1, result
        return handle.id

    return send


def bare_side(
    client: Client, task_queue: str, starts: Starts, name: str, *, eager: bool = True
) -> Send:
    async def send(i: int) -> str:
        handle = await client.start_workflow(
            BareWorkflow.run,
            str(i),
            id=f"bare-{uuid.uuid4()}",
            task_queue=task_queue,
            request_eager_start=eager,
        )
        starts.record(name, handle)
        await handle.result()
        return handle.id

    return send


@dataclass
class Direct:
    """ACCI's command path without Temporal: what its ``RunCommand`` activity does."""

    handler: CommandHandler
    runtime: EventStoreRuntime
    publisher: EventPublisher
    retries: int = 0

    async def handle(self, command: CommandInput) -> int:
        parsed = parse(command)  # validate
        aggregate_for_command(parsed)
        outcome = await self.handler.handle(  # handle: load, decide, append
            command.tenant_id, parsed, command_id=command.command_id, metadata=command.metadata
        )
        # Publish: read back from the store, publish confirmed, off the event loop.
        events = await self.runtime.store.command_events(command.tenant_id, command.command_id)
        causation_id = command.metadata.get("causation_id")
        delay = 0.2
        while True:  # retried until RabbitMQ answers, as the workflow's retry policy does
            try:
                await asyncio.to_thread(
                    self.publisher.publish_events, events, causation_id=causation_id
                )
                return len(outcome.event_ids)
            except MessagingError:
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def side(self, tenants: Sequence[str]) -> Send:
        async def send(i: int) -> str:
            published = await self.handle(rename(tenants, i, "direct"))
            assert published == 1
            return ""

        return send

    def activities(self) -> CommandActivities:
        return CommandActivities(
            handler=self.handler,
            store=self.runtime.store,
            publisher=self.publisher,
            audit=AuditLog(self.runtime.pool),
        )


@asynccontextmanager
async def direct_path(settings: Settings) -> AsyncIterator[Direct]:
    """ACCI's parts over a pool and RabbitMQ connection of their own (the worker's settings)."""
    async with open_event_store(settings) as rt:
        publisher = EventPublisher(settings.rabbitmq_url.get_secret_value())
        try:
            await asyncio.to_thread(publisher.declare)
            handler = CommandHandler(
                rt.store,
                rt.repository,
                conflict_budget_seconds=settings.command_conflict_budget_ms / 1000,
            )
            yield Direct(handler, rt, publisher)
        finally:
            await asyncio.to_thread(publisher.close)


# -- one Temporal server: set-up and cases ----------------------------------------------------


def worker(client: Client, task_queue: str, settings: Settings, **kwargs: Any) -> Worker:
    """A worker with the same concurrency limits as ACCI's."""
    return Worker(
        client,
        task_queue=task_queue,
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_local_activities=settings.worker_max_concurrent_activities,
        **kwargs,
    )


@dataclass
class Server:
    """Everything measured against one dev server."""

    label: str
    sizes: Sizes
    client: Client
    queues: dict[str, str]  # by worker: acci, bare, reimported, unsandboxed
    direct: Direct
    whatifs: Sequence[str]
    tenants: list[str] = field(default_factory=list)
    starts: Starts = field(default_factory=Starts)

    def sides(self) -> dict[str, Send]:
        """ACCI, bare and direct, then each what-if measured and the bare side it is held to."""
        client, queues, tenants, starts = self.client, self.queues, self.tenants, self.starts
        sides = {
            "acci": command_side(client, queues["acci"], tenants, starts, "acci"),
            "bare": bare_side(client, queues["bare"], starts, "bare"),
            "direct": self.direct.side(tenants),
        }
        whatifs = {
            "without eager start": command_side(
                client, queues["acci"], tenants, starts, "without eager start", eager=False
            ),
            "module re-imported": command_side(
                client, queues["reimported"], tenants, starts, "module re-imported"
            ),
            "unsandboxed": command_side(
                client, queues["unsandboxed"], tenants, starts, "unsandboxed"
            ),
            "attributes upserted": command_side(
                client, queues["acci"], tenants, starts, "attributes upserted", attributes=False
            ),
            "bare, without eager start": bare_side(
                client, queues["bare"], starts, "bare, without eager start", eager=False
            ),
        }
        for name in self.whatifs:
            sides[name] = whatifs[name]
            baseline = BASELINES.get(name, "bare")
            if baseline not in sides:
                sides[baseline] = whatifs[baseline]
        return sides

    async def create_tenants(self, prefix: str) -> None:
        """One tenant per lane, created through ACCI one after the other.

        Concurrent first appends of new tenants (each makes its partitions) can deadlock in
        PostgreSQL; ACCI retries and gets through, but set-up need not measure that.
        """
        self.tenants = [f"{prefix}-{k:03d}" for k in range(self.sizes.concurrency)]
        for tenant in self.tenants:
            command = CommandInput(
                command_id=uuid.uuid4(),
                tenant_id=tenant,
                command_type="CreateTenant",
                payload={"name": f"Bench tenant {tenant}"},
                principal=BENCH,
            )
            await execute_command(self.client, command, task_queue=self.queues["acci"])

    def results(self, case: str, runs: dict[str, Runs]) -> list[Result]:
        """The case's ACCI rows, then a what-if's rows for each variant measured."""
        return [Result(case, runs)] + [
            Result(f"↳ what-if: {name}", runs, subject=name, baseline=BASELINES.get(name, "bare"))
            for name in self.whatifs
        ]

    async def concurrent(self) -> list[Result]:
        s = self.sizes
        sides = self.sides()
        await warm_up(sides, count=s.concurrency, lanes=s.concurrency)
        runs = await interleaved(sides, total=s.concurrent, lanes=s.concurrency, rounds=s.rounds)
        results = self.results(f"{self.label}: {s.concurrent} at C={s.concurrency}", runs)
        results[0].check("cmd/s", ">= 0.8x bare", 0.8, at_most=False)
        return results

    async def sequential(self) -> list[Result]:
        s = self.sizes
        sides = self.sides()
        await warm_up(sides, count=10, lanes=1)
        runs = await interleaved(sides, total=s.sequential, lanes=1, rounds=s.rounds)
        results = self.results(f"{self.label}: {s.sequential} sequential", runs)
        results[0].check("p50", "<= 1.5x bare", 1.5, at_most=True)
        return results

    async def history_shapes(self) -> list[str]:
        """What one run of each workflow writes to its history."""
        shapes = []
        for name, send in self.sides().items():
            if name != "direct":
                shape = await history_shape(self.client, await send(0))
                shapes.append(f"{self.label}, {name}: {shape}")
        return shapes


async def history_shape(client: Client, workflow_id: str) -> str:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(EventType.Name(e.event_type) for e in history.events)
    size = sum(e.ByteSize() for e in history.events)
    return (
        f"{len(history.events)} history events ({size:,} bytes),"
        f" {kinds['EVENT_TYPE_WORKFLOW_TASK_STARTED']} workflow task(s),"
        f" {kinds['EVENT_TYPE_MARKER_RECORDED']} local-activity marker(s),"
        f" {kinds['EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES']} search-attribute upsert(s)"
    )


async def against_server(
    label: str,
    sizes: Sizes,
    direct: Direct,
    settings: Settings,
    *,
    db_file: str | None,
    shapes: bool,
) -> tuple[list[Result], list[str]]:
    """Start a dev server and the workers on it, and run the cases; shut all down after.

    Returns the results, and notes: the history shapes (if ``shapes``), and the eager starts.
    """
    whatifs = WHATIFS[label]
    log(f"{label}: starting the dev server")
    async with dev_server(db_file) as env, AsyncExitStack() as workers:
        client = env.client
        queues = {
            name: f"{name}-bench-{uuid.uuid4().hex[:8]}"
            for name in ("acci", "bare", "reimported", "unsandboxed")
        }
        acci_settings = settings.model_copy(
            update={
                "temporal_address": str(client.service_client.config.target_host),
                "task_queue": queues["acci"],
            }
        )
        # Commands only: projections are not the command path measured here.
        await workers.enter_async_context(running_worker(acci_settings, client, projections=[]))
        await workers.enter_async_context(
            worker(
                client,
                queues["bare"],
                settings,
                workflows=[BareWorkflow],
                activities=[noop],
                workflow_runner=passthrough_runner(),
            )
        )
        # The sandbox what-ifs: ACCI's workflow and activity on workers of their own, with the
        # SDK's default sandbox (the module re-imported for every run), or with none at all.
        runners = {
            "module re-imported": workflow_runner(()),
            "unsandboxed": UnsandboxedWorkflowRunner(),
        }
        queue_of = {"module re-imported": "reimported", "unsandboxed": "unsandboxed"}
        for name, runner in runners.items():
            if name in whatifs:
                await workers.enter_async_context(
                    worker(
                        client,
                        queues[queue_of[name]],
                        settings,
                        workflows=[CommandWorkflow],
                        activities=[direct.activities().run],
                        workflow_runner=runner,
                    )
                )
        server = Server(label, sizes, client, queues, direct, whatifs)
        log(f"{label}: creating {sizes.concurrency} tenants")
        await server.create_tenants(f"b{uuid.uuid4().hex[:6]}")
        log(f"{label}: {sizes.concurrent} commands per side at C={sizes.concurrency}")
        results = await server.concurrent()
        log(f"{label}: {sizes.sequential} sequential commands per side")
        results += await server.sequential()
        notes = await server.history_shapes() if shapes else []
        notes.append(server.starts.note(label))
    return results, notes


# -- set-up ------------------------------------------------------------------------------------


async def run(sizes: Sizes, failures: WarningCounter) -> tuple[list[Result], list[str]]:
    server_url = os.environ.get(
        "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    recreate_database(server_url, DB)
    settings = Settings(
        database_url=database_url(server_url, DB),
        rabbitmq_url=os.environ.get(
            "ACCI_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"
        ),
        metrics_port=0,  # no Prometheus endpoint
    )
    async with direct_path(settings) as direct:
        results, notes = await against_server(
            "in-memory", sizes, direct, settings, db_file=None, shapes=True
        )
        with tempfile.TemporaryDirectory(prefix="acci-bench-") as tmp:
            db_file = str(Path(tmp) / "temporal.db")
            more, more_notes = await against_server(
                "SQLite", sizes, direct, settings, db_file=db_file, shapes=False
            )
        notes += more_notes
        notes.append(
            f"Retried failures: {failures.count} activity attempt(s) in the workers,"
            f" {direct.retries} publish(es) on the direct path (0 and 0 for an undisturbed run)."
        )
    return results + more, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    args = parser.parse_args()
    sizes = Sizes.for_run(quick=args.quick)
    failures = WarningCounter()
    logging.getLogger("temporalio.activity").addFilter(failures)
    tune_gc()  # as `acci worker` does once its modules are imported (workers/process.py)
    t0 = time.perf_counter()
    results, notes = asyncio.run(run(sizes, failures))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    print(markdown(results, notes))


if __name__ == "__main__":
    main()
