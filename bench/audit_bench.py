"""What authorizing and auditing a command costs: ``RunCommand`` with and without its audit write.

    .venv/bin/python bench/audit_bench.py [--rounds R] [--commands N] [--lanes L]

The command activity (``CommandActivities.run``: authorize, validate, load, decide, append,
audit, publish to RabbitMQ) runs in ``temporalio.testing.ActivityEnvironment``, without a
Temporal server, so that the audit's share is not hidden by the workflow's own cost. The two
sides are the same object graph; one writes its audit rows to ``audit.command_attempts``, the
other hands them to a no-op. Each round, each side sends N ``RenameTenant`` commands from L
lanes, one fresh tenant per lane (so no side's streams are longer than the other's), the sides
alternating who goes first. The database ``acci_bench_audit`` on ``ACCI_BENCH_SERVER_URL`` is
dropped and created afresh. The machine is shared and noisy: read the ratio, taken per round
(the sides ran back to back) and reported as the median with the lowest and highest round.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
import uuid
from typing import Any

from harness import database_url, recreate_database
from temporalio.testing import ActivityEnvironment

from acci.activities.command_activities import CommandActivities
from acci.activities.command_handler import CommandHandler
from acci.activities.models import CommandInput
from acci.domain.principals import Principal
from acci.eventstore.audit import AuditLog, CommandAttempt
from acci.eventstore.messaging.publisher import EventPublisher
from acci.workers.runtime import open_event_store
from acci.workers.settings import Settings

DB = "acci_bench_audit"
SENDER = Principal(id="bench-admin", tenant_id=None, roles=frozenset({"system_admin"}))
SIDES = ("audited", "not audited")


class NoAudit(AuditLog):
    """Takes every row and writes none (the baseline)."""

    def __init__(self) -> None:
        pass

    async def record(self, attempt: CommandAttempt) -> bool:
        return True


def _command(tenant: str, command_type: str, **payload: Any) -> CommandInput:
    return CommandInput(
        command_id=uuid.uuid4(),
        tenant_id=tenant,
        command_type=command_type,
        payload=payload,
        principal=SENDER,
    )


async def _round(env: ActivityEnvironment, side: CommandActivities, *, n: int, lanes: int) -> float:
    """Commands per second of one side's round (its tenants created first, not timed)."""
    tenants = [f"audit-bench-{uuid.uuid4().hex[:8]}" for _ in range(lanes)]
    for tenant in tenants:
        await env.run(side.run, _command(tenant, "CreateTenant", name=tenant))

    async def lane(tenant: str) -> None:
        for i in range(n // lanes):
            await env.run(side.run, _command(tenant, "RenameTenant", name=f"{tenant} {i}"))

    started = time.perf_counter()
    await asyncio.gather(*(lane(t) for t in tenants))
    return (n // lanes) * lanes / (time.perf_counter() - started)


async def main(rounds: int, n: int, lanes: int) -> None:
    server = os.environ.get(
        "ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    recreate_database(server, DB)
    settings = Settings(
        database_url=database_url(server, DB),  # type: ignore[arg-type]
        metrics_port=0,
        temporal_metrics_port=0,
        snapshot_after_events=0,
    )
    async with open_event_store(settings) as rt:
        publisher = EventPublisher(settings.rabbitmq_url.get_secret_value())
        handler = CommandHandler(rt.store, rt.repository)
        sides = {
            name: CommandActivities(
                handler=handler, store=rt.store, publisher=publisher, audit=audit
            )
            for name, audit in zip(SIDES, (AuditLog(rt.pool), NoAudit()), strict=True)
        }
        env = ActivityEnvironment()
        rates: dict[str, list[float]] = {name: [] for name in SIDES}
        for r in range(rounds):
            for name in SIDES if r % 2 == 0 else tuple(reversed(SIDES)):
                rates[name].append(await _round(env, sides[name], n=n, lanes=lanes))
                print(f"round {r + 1}: {name} {rates[name][-1]:.0f} cmd/s", file=sys.stderr)
        publisher.close()
    ratios = [a / b for a, b in zip(rates[SIDES[0]], rates[SIDES[1]], strict=True)]
    print(f"\nRunCommand, {n} commands x {rounds} rounds, {lanes} lanes (cmd/s, median of rounds)")
    print(f"{'side':<14}{'cmd/s':>8}")
    for name in SIDES:
        print(f"{name:<14}{statistics.median(rates[name]):>8.0f}")
    print(
        f"audited / not audited: {statistics.median(ratios):.2f}x throughput"
        f" [{min(ratios):.2f}-{max(ratios):.2f}]"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--commands", type=int, default=400)
    parser.add_argument("--lanes", type=int, default=8)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    asyncio.run(main(args.rounds, args.commands, args.lanes))
