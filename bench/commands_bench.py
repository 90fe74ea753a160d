"""ACCI's command workflow against a bare one-local-activity workflow, on the same dev server.

    .venv/bin/python bench/commands_bench.py [--quick]

In one process: a Temporal dev server (in memory, then again with a SQLite file), ACCI's worker
(``running_worker``) and a second worker running ``BareWorkflow`` (one no-op local activity), both
on the same client and data converter, and ACCI's direct path (``CommandHandler.handle`` plus
``EventPublisher``, no Temporal) for reference. ACCI's commands are ``RenameTenant`` on tenants
created in a set-up phase (so each append is a steady-state one, partitions already there), one
tenant per concurrent lane, so that concurrency conflicts play no part. The database
``acci_bench_cmd`` on ``ACCI_BENCH_SERVER_URL`` is dropped and created afresh.

The machine this runs on is shared and noisy, so absolute figures mean little: read the ratios.
The sides run back to back, round by round, rotating who goes first; each ratio is ACCI's figure
over the other side's, pooled over the rounds, with the lowest and highest round's ratio in
brackets. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# The sandbox re-imports this file for every run of BareWorkflow: keep everything it does not
# need passed through, as ACCI's workflow module does.
with workflow.unsafe.imports_passed_through():
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from activities.command_activities import parse
    from activities.commands import CommandHandler
    from eventstore.errors import MessagingError
    from eventstore.publisher import EventPublisher
    from workers.devserver import temporal_binary
    from workers.runtime import EventStoreRuntime, open_event_store
    from workers.settings import Settings
    from workers.temporal_client import execute_command
    from workers.worker import running_worker
    from workflows.command import SEARCH_ATTRIBUTES
    from workflows.models import CommandInput

DB = "acci_bench_cmd"
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


# -- sizes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each case does; --quick shrinks everything."""

    concurrent: int  # commands per side at `concurrency`, over all rounds
    concurrency: int  # lanes (and tenants: one per lane)
    sequential: int  # commands per side at concurrency 1, over all rounds
    rounds: int  # interleaved rounds per case

    @classmethod
    def for_run(cls, *, quick: bool) -> Sizes:
        if quick:
            return cls(concurrent=100, concurrency=20, sequential=30, rounds=2)
        return cls(concurrent=500, concurrency=50, sequential=100, rounds=4)


# -- timing ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Sample:
    """One side's commands in one round: each one's latency, and the round's wall time."""

    latencies: list[float]
    seconds: float

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds


@dataclass
class Runs:
    """One side's rounds of a case."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return [t for s in self.samples for t in s.latencies]

    def figure(self, metric: str, samples: Sequence[Sample] | None = None) -> float:
        """cmd/s over all rounds (or the given ones), or a latency percentile in ms."""
        samples = self.samples if samples is None else samples
        if metric == "cmd/s":
            return sum(len(s.latencies) for s in samples) / sum(s.seconds for s in samples)
        q = {"p50": 50, "p99": 99}[metric]
        return percentile([t for s in samples for t in s.latencies], q) * 1_000


Send = Callable[[int], Awaitable[object]]  # sends command number i (round-robin over tenants)


async def run_lanes(send: Send, first: int, count: int, lanes: int) -> Sample:
    """Commands first..first+count-1, lane k sending those with i % lanes == k in order."""
    latencies: list[float] = []

    async def lane(k: int) -> None:
        for i in range(first + k, first + count, lanes):
            t0 = time.perf_counter()
            await send(i)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(lanes)))
    return Sample(latencies, time.perf_counter() - t0)


async def interleaved(
    sides: dict[str, Send], *, total: int, lanes: int, rounds: int
) -> dict[str, Runs]:
    """Each side sends total/rounds commands per round; the first side rotates every round."""
    names = list(sides)
    runs = {name: Runs() for name in names}
    per_round = total // rounds
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            runs[name].samples.append(await run_lanes(sides[name], r * per_round, per_round, lanes))
    return runs


async def warm_up(sides: dict[str, Send], *, count: int, lanes: int) -> None:
    for send in sides.values():
        await run_lanes(send, 0, count, lanes)


# -- results -----------------------------------------------------------------------------------

METRICS = ("cmd/s", "p50", "p99")


@dataclass(frozen=True)
class Target:
    text: str
    met: bool

    def __str__(self) -> str:
        return f"{self.text}: {'PASS' if self.met else 'MISS'}"


@dataclass
class Result:
    """One case (several sides measured in the same rounds): a table row per metric."""

    case: str
    runs: dict[str, Runs]
    targets: dict[str, list[Target]] = field(default_factory=dict)  # by metric

    def ratio(self, side: str, other: str, metric: str) -> float | None:
        if side not in self.runs or other not in self.runs:
            return None
        return self.runs[side].figure(metric) / self.runs[other].figure(metric)

    def ratio_range(self, side: str, other: str, metric: str) -> tuple[float, float] | None:
        if side not in self.runs or other not in self.runs:
            return None
        pairs = zip(self.runs[side].samples, self.runs[other].samples, strict=True)
        ratios = sorted(
            self.runs[side].figure(metric, [a]) / self.runs[other].figure(metric, [b])
            for a, b in pairs
        )
        return ratios[0], ratios[-1]

    def check(self, metric: str, text: str, value: float | None, *, at_most: bool) -> None:
        """A target on ``value`` (a ratio): met when at most/at least the bound in ``text``."""
        bound = float(text.split()[1].rstrip("x"))
        met = value is not None and (value <= bound if at_most else value >= bound)
        self.targets.setdefault(metric, []).append(Target(text, met))

    def cell_ratio(self, side: str, other: str, metric: str) -> str:
        value = self.ratio(side, other, metric)
        if value is None:
            return "-"
        text = f"{value:.2f}x"
        spread = self.ratio_range(side, other, metric)
        if metric != "p99" and spread is not None and len(self.runs[side].samples) > 1:
            text += f" ({spread[0]:.2f}-{spread[1]:.2f})"
        return text

    def rows(self, columns: Sequence[str], ratios: Sequence[tuple[str, str]]) -> list[list[str]]:
        out = []
        for metric in METRICS:
            unit = "cmd/s" if metric == "cmd/s" else f"{metric} ms"
            cells = [self.case if metric == METRICS[0] else "", unit]
            for side in columns:
                runs = self.runs.get(side)
                value = None if runs is None else runs.figure(metric)
                cells.append("-" if value is None else f"{value:,.1f}")
            cells += [self.cell_ratio(a, b, metric) for a, b in ratios]
            cells.append("; ".join(map(str, self.targets.get(metric, []))) or "")
            out.append(cells)
        return out


def markdown(results: Sequence[Result], columns: Sequence[str]) -> str:
    ratios = [("acci", "bare"), ("acci", "direct")]
    header = ["Case", "Metric", *columns, "ACCI/bare", "ACCI/direct", "Target"]
    rows = [header, ["---"] * len(header)]
    for result in results:
        rows += result.rows(columns, ratios)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


# -- the sides ---------------------------------------------------------------------------------


def rename(tenants: Sequence[str], i: int, side: str) -> CommandInput:
    """Command number i of a side: rename tenant i % len(tenants) to a name never used."""
    tenant = tenants[i % len(tenants)]
    return CommandInput(
        command_id=uuid.uuid4(),
        tenant_id=tenant,
        command_type="RenameTenant",
        payload={"name": f"{tenant} {side} {uuid.uuid4().hex}"},
    )


def acci_side(client: Client, task_queue: str, tenants: Sequence[str]) -> Send:
    async def send(i: int) -> None:
        result = await execute_command(client, rename(tenants, i, "acci"), task_queue=task_queue)
        assert len(result.event_ids) == 1, result

    return send


def bare_side(client: Client, task_queue: str) -> Send:
    async def send(i: int) -> None:
        await client.execute_workflow(
            BareWorkflow.run, str(i), id=f"bare-{uuid.uuid4()}", task_queue=task_queue
        )

    return send


@dataclass
class Direct:
    """ACCI's command path without Temporal: what the three activities do, called in turn."""

    handler: CommandHandler
    runtime: EventStoreRuntime
    publisher: EventPublisher

    async def handle(self, command: CommandInput) -> int:
        parse(command)  # ValidateCommand
        outcome = await self.handler.handle(  # HandleCommand
            command.tenant_id,
            parse(command),
            command_id=command.command_id,
            metadata=command.metadata,
        )
        # PublishEvents: read back from the store, publish confirmed, off the event loop.
        events = await self.runtime.store.command_events(command.tenant_id, command.command_id)
        delay = 0.2
        while True:  # retried until RabbitMQ answers, as the workflow's retry policy does
            try:
                await asyncio.to_thread(self.publisher.publish_events, events)
                return len(outcome.event_ids)
            except MessagingError as e:
                log(f"direct path: {e}; retrying (this round's figures are disturbed)")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def side(self, tenants: Sequence[str]) -> Send:
        async def send(i: int) -> None:
            published = await self.handle(rename(tenants, i, "direct"))
            assert published == 1

        return send


@asynccontextmanager
async def direct_path(settings: Settings) -> AsyncIterator[Direct]:
    """ACCI's direct path over its own pool and RabbitMQ connection (the worker's settings)."""
    async with open_event_store(settings) as rt:
        publisher = EventPublisher(settings.rabbitmq_url.get_secret_value())
        try:
            await asyncio.to_thread(publisher.declare)
            handler = CommandHandler(
                rt.store, rt.repository, max_attempts=settings.command_max_attempts
            )
            yield Direct(handler, rt, publisher)
        finally:
            await asyncio.to_thread(publisher.close)


# -- one Temporal server: set-up and cases ----------------------------------------------------


@asynccontextmanager
async def dev_server(db_file: str | None) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server as the tests start one: in memory, or over a SQLite file."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_database_filename=db_file,
    )
    try:
        yield env
    finally:
        await env.shutdown()


def bare_worker(client: Client, task_queue: str, settings: Settings) -> Worker:
    """The baseline's worker, with the same concurrency limits as ACCI's."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow],
        activities=[noop],
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_concurrent_local_activities=settings.worker_max_concurrent_activities,
    )


@dataclass
class Server:
    """Everything measured against one dev server."""

    label: str
    sizes: Sizes
    client: Client
    acci_queue: str
    bare_queue: str
    direct: Direct
    tenants: list[str] = field(default_factory=list)

    def sides(self) -> dict[str, Send]:
        return {
            "acci": acci_side(self.client, self.acci_queue, self.tenants),
            "bare": bare_side(self.client, self.bare_queue),
            "direct": self.direct.side(self.tenants),
        }

    async def create_tenants(self, prefix: str) -> None:
        """One tenant per lane, created through ACCI (their partitions too)."""
        self.tenants = [f"{prefix}-{k:03d}" for k in range(self.sizes.concurrency)]

        async def create(tenant: str) -> None:
            command = CommandInput(
                command_id=uuid.uuid4(),
                tenant_id=tenant,
                command_type="CreateTenant",
                payload={"name": f"Bench tenant {tenant}"},
            )
            await execute_command(self.client, command, task_queue=self.acci_queue)

        await asyncio.gather(*(create(t) for t in self.tenants))

    async def concurrent(self) -> Result:
        s = self.sizes
        sides = self.sides()
        await warm_up(sides, count=s.concurrency * 2, lanes=s.concurrency)
        runs = await interleaved(sides, total=s.concurrent, lanes=s.concurrency, rounds=s.rounds)
        result = Result(f"{self.label}: {s.concurrent} at C={s.concurrency}", runs)
        result.check("cmd/s", ">= 0.8x bare", result.ratio("acci", "bare", "cmd/s"), at_most=False)
        return result

    async def sequential(self) -> Result:
        s = self.sizes
        sides = self.sides()
        await warm_up(sides, count=10, lanes=1)
        runs = await interleaved(sides, total=s.sequential, lanes=1, rounds=s.rounds)
        result = Result(f"{self.label}: {s.sequential} sequential", runs)
        result.check("p50", "<= 1.5x bare", result.ratio("acci", "bare", "p50"), at_most=True)
        return result


async def against_server(
    label: str, sizes: Sizes, direct: Direct, settings: Settings, db_file: str | None
) -> list[Result]:
    """Start a dev server, both workers on it, and run the cases."""
    log(f"{label}: starting the dev server")
    async with dev_server(db_file) as env:
        address = str(env.client.service_client.config.target_host)
        worker_settings = settings.model_copy(
            update={"temporal_address": address, "task_queue": f"acci-bench-{uuid.uuid4().hex[:8]}"}
        )
        bare_queue = f"bare-bench-{uuid.uuid4().hex[:8]}"
        async with (
            running_worker(worker_settings, env.client),
            bare_worker(env.client, bare_queue, worker_settings),
        ):
            acci_queue = worker_settings.task_queue
            server = Server(label, sizes, env.client, acci_queue, bare_queue, direct)
            log(f"{label}: creating {sizes.concurrency} tenants")
            await server.create_tenants(f"b{uuid.uuid4().hex[:6]}")
            log(f"{label}: {sizes.concurrent} commands at C={sizes.concurrency}")
            results = [await server.concurrent()]
            log(f"{label}: {sizes.sequential} sequential commands")
            results.append(await server.sequential())
    return results


# -- set-up ------------------------------------------------------------------------------------


def database_url(server_url: str, name: str) -> str:
    params = conninfo_to_dict(server_url)
    params["dbname"] = name
    return make_conninfo(**params)


def recreate_database(server_url: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))


async def run(sizes: Sizes) -> list[Result]:
    server_url = os.environ.get(
        "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    recreate_database(server_url)
    settings = Settings(
        database_url=database_url(server_url, DB),  # type: ignore[arg-type]
        rabbitmq_url=os.environ.get(  # type: ignore[arg-type]
            "ACCI_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"
        ),
    )
    results: list[Result] = []
    async with direct_path(settings) as direct:
        results += await against_server("in-memory", sizes, direct, settings, None)
        with tempfile.TemporaryDirectory(prefix="acci-bench-") as tmp:
            db_file = str(Path(tmp) / "temporal.db")
            results += await against_server("SQLite", sizes, direct, settings, db_file)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    args = parser.parse_args()
    sizes = Sizes.for_run(quick=args.quick)
    t0 = time.perf_counter()
    results = asyncio.run(run(sizes))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    print(markdown(results, ["acci", "bare", "direct"]))


if __name__ == "__main__":
    main()
