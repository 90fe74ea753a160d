"""Waking caught-up projection runners when events were appended.

A caught-up runner waits (up to its idle time) for ``Appended``; it is set in-process by whoever
appended (the worker's command activities) and, through PostgreSQL ``NOTIFY``, by every other
process that appends through a worker. Nothing on the command path waits for any of it: setting
is a counter increment, and the ``NOTIFY`` goes out from a background task, coalesced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Final

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from acci.readmodels.db import translated
from acci.readmodels.errors import ReadModelError

log = logging.getLogger(__name__)

CHANNEL: Final = "acci_events_appended"
_NOTIFY: Final = "SELECT pg_notify('acci_events_appended', '')"
_LISTEN: Final = "LISTEN acci_events_appended"


class Appended:
    """A counter of appends that waiters can sleep on."""

    def __init__(self) -> None:
        self._generation = 0
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def generation(self) -> int:
        """Read it before looking for events; ``wait`` then misses no append after it."""
        return self._generation

    def set(self) -> None:
        """Events were appended: wake every waiter."""
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """The process is stopping: every wait, now and later, returns False at once."""
        self._closed = True
        self.set()

    async def wait(self, since: int, timeout: float) -> bool:  # noqa: ASYNC109 - a bounded wait is the point
        """Whether events were appended after ``since``, waiting up to ``timeout`` seconds."""
        if self._closed:
            return False
        if self._generation != since:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return not self._closed


class AppendNotifier:
    """Sets ``Appended`` here and sends ``NOTIFY`` to other processes; never blocks the caller.

    Appends while a ``NOTIFY`` is on its way (and for ``interval`` seconds after) share the next.
    """

    def __init__(
        self, pool: AsyncConnectionPool, appended: Appended, *, interval: float = 0.05
    ) -> None:
        self._pool = pool
        self._appended = appended
        self._interval = interval
        self._pending = False
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Events were appended (returns at once)."""
        self._appended.set()
        self._pending = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def aclose(self) -> None:
        """Stop sending (a dropped notification costs a waiter at most its idle time)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _send(self) -> None:
        while self._pending:
            self._pending = False
            try:
                with translated():
                    async with self._pool.connection() as conn:
                        await conn.execute(_NOTIFY)
            except ReadModelError as e:
                log.debug("append notification not sent", extra={"error": str(e)})
            await asyncio.sleep(self._interval)


class AppendListener:
    """Sets ``Appended`` on every ``NOTIFY`` from another process, over its own connection, and
    hands the payloads of ``also``'s channels to their callbacks.

    Reconnects after a lost connection (and sets ``Appended`` then, and calls every callback
    with None, for what it may have missed).
    """

    def __init__(
        self,
        conninfo: str,
        appended: Appended,
        *,
        retry_seconds: float = 1.0,
        also: Mapping[str, Callable[[str | None], None]] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._appended = appended
        self._retry = retry_seconds
        # Other channels on the same connection, each with what to do with a notification's
        # payload (None after a reconnect: whatever was sent meanwhile was missed).
        self._also = dict(also or {})
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def __aenter__(self) -> AppendListener:
        self._task = asyncio.get_running_loop().create_task(self._listen())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self) -> None:
        while True:
            try:
                with translated():
                    async with await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True
                    ) as conn:
                        await conn.execute(_LISTEN)
                        for channel in self._also:
                            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                        self.listening.set()
                        self._appended.set()
                        for missed in self._also.values():
                            missed(None)
                        async for notify in conn.notifies():
                            if notify.channel in self._also:
                                self._also[notify.channel](notify.payload)
                            else:
                                self._appended.set()
            except ReadModelError as e:
                self.listening.clear()
                log.warning("not listening for appends", extra={"error": str(e)})
            await asyncio.sleep(self._retry)
