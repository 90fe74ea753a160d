"""Running batches while appends come: a batch, then, once caught up, waiting for the next
append (``readmodels/wakeups.py``) and running again, until it is time to report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Final

from acci.readmodels.batch import Batches
from acci.readmodels.catchup import catch_up
from acci.readmodels.reports import BatchReport
from acci.readmodels.shared_log import SharedLog
from acci.readmodels.transaction import Parking
from acci.readmodels.wakeups import Appended

HEARTBEAT_SECONDS: Final = 5.0
"""How often ``run_batches`` calls its heartbeat while it waits for appends."""

CATCH_UP_BUDGET_SECONDS: Final = 10.0
"""How long ``run_batches`` works through a backlog before it returns to report progress."""

BACKLOG_BATCH: Final = 2_000
"""Events per transaction (at least) while ``run_batches`` works through a backlog: a commit,
its checkpoint move and each statement's planning are shared by more events, and a row that
many of them change is written once (measured in ``bench/readside_bench.py``). Only this
projection writes the rows the transaction holds, so holding them longer keeps nobody waiting
(queries read without locks)."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """How ``run_batches`` waits once caught up, and when it returns.

    It waits up to ``wait_seconds`` for an append (``appended``; None: it only sleeps), returns
    ``report_seconds`` after it started once it applied something, lets ``gather_seconds``
    pass after a wake-up so that a burst of appends costs one batch, runs a batch anyway every
    ``poll_seconds`` while it waits (0: never), and calls ``heartbeat`` after every batch and
    at least every ``HEARTBEAT_SECONDS`` while it waits.

    The poll is for appends no wake-up announces (a process that appends without waking the
    workers: a restore, an event migration, a script): one cheap read each, inside the
    activity, so a long ``wait_seconds`` costs the workflow's history nothing while no event is
    left waiting for longer than the poll. Each poll's batch runs inside ``quiet()``: tracing
    passes one that keeps a poll's statements out of the waiting activity's trace (hundreds of
    empty reads would bury the batches that applied something).
    """

    wait_seconds: float = 0.0
    report_seconds: float = 0.0
    gather_seconds: float = 0.0
    poll_seconds: float = 0.0
    appended: Appended | None = None
    heartbeat: Callable[[], None] | None = None
    quiet: Callable[[], AbstractContextManager[object]] = nullcontext


async def run_batches(
    batches: Batches, log: SharedLog, *, limit: int, parking: Parking, waiting: Waiting
) -> BatchReport:
    """A batch; then, while caught up, wait for appends and run again (``Waiting`` says how).

    Returns the last batch's report, every batch's events counted: at once when a batch did
    not catch up (a backlog is first worked through by the pipelined catch-up for up to
    ``CATCH_UP_BUDGET_SECONDS``), failed, parked or found the projection paused; else when it
    is time to report, no append came, or ``appended`` was closed. Only the first batch parks.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    applied = 0
    appended, heartbeat = waiting.appended, waiting.heartbeat
    polled = False
    while True:
        since = appended.generation if appended is not None else 0
        with waiting.quiet() if polled else nullcontext():
            report = await batches.run(limit=limit, parking=parking)
        applied += report.applied
        if heartbeat is not None:
            heartbeat()
        if _backlog(report, parking):
            # A backlog (a new or reset projection, a worker back after an outage): the
            # pipelined catch-up, for a while, then back to the caller with the progress.
            report = await catch_up(
                batches,
                log,
                limit=max(limit, BACKLOG_BATCH),
                budget=CATCH_UP_BUDGET_SECONDS,
                heartbeat=heartbeat,
            )
            return await batches.measured(replace(report, applied=applied + report.applied))
        parking = replace(parking, event_id=None)
        if not report.caught_up or report.parked is not None:
            return await batches.measured(replace(report, applied=applied))
        # Once something was applied, report it within report_seconds.
        wait = waiting.wait_seconds
        deadline = start + (min(waiting.report_seconds, wait) if applied else wait)
        poll = loop.time() + waiting.poll_seconds if waiting.poll_seconds > 0 else deadline
        polled = not await _wait(appended, since, min(deadline, poll), heartbeat)
        if not polled:
            if waiting.gather_seconds > 0:
                await asyncio.sleep(waiting.gather_seconds)
        elif loop.time() >= deadline or (appended is not None and appended.closed):
            return await batches.measured(replace(report, applied=applied))


def _backlog(report: BatchReport, parking: Parking) -> bool:
    """Whether a first, ordinary batch left events behind without failing or pausing."""
    return (
        parking.first_try
        and not report.caught_up
        and report.failure is None
        and report.parked is None
        and not report.paused
    )


async def _wait(
    appended: Appended | None,
    since: int,
    deadline: float,
    heartbeat: Callable[[], None] | None,
) -> bool:
    """Whether an append came after ``since`` before ``deadline`` (loop time)."""
    loop = asyncio.get_running_loop()
    while (remaining := deadline - loop.time()) > 0:
        step = min(remaining, HEARTBEAT_SECONDS)
        if appended is None:
            await asyncio.sleep(step)
        elif await appended.wait(since, step):
            return True
        elif appended.closed:
            return False
        if heartbeat is not None:
            heartbeat()
    return False
