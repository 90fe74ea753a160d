"""Heartbeats for activities whose work is one long statement or transaction.

While the block runs, the activity heartbeats every few seconds from a task of its own, so a
killed worker's activity is retried after the heartbeat timeout, not after its whole
start-to-close timeout, and a cancel reaches it. ``to_the_end`` lets a cancelled step's
transaction end (commit or roll back) before the cancel is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

from temporalio import activity

T = TypeVar("T")
EVERY: Final = 3.0


@asynccontextmanager
async def heartbeating(doing: str) -> AsyncIterator[None]:
    """Heartbeat ``{"doing": doing, "seconds": …}`` every ``EVERY`` seconds in the block."""
    started = time.monotonic()

    async def beat() -> None:
        while True:
            activity.heartbeat({"doing": doing, "seconds": round(time.monotonic() - started)})
            await asyncio.sleep(EVERY)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def to_the_end(step: Coroutine[Any, Any, T]) -> T:
    """Run ``step``; cancelled, let its transaction end first, then raise (the workflow acts on
    the cancel only once no step of it is still writing)."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
