"""The global order read once for every projection of a process that is catching up.

Projections that are behind (a new or reset one, a worker back after an outage) each need the
same events in the same order. Reading and decoding them once per projection cost more than
applying them, so the runners of one process read through cursors of one ``SharedLog``: a page
of ``read_all`` is read once and served to every cursor that needs it, read-only; each runner
skips what is at or before its own checkpoint and applies the rest in its own transactions.

Why a page may be served to a cursor that did not ask for it: a page that came back *full* (as
many events as asked for) holds every event that will ever be in ``(after, last]``. Gap-free
reads return only events of transactions below the horizon, all of them finished, and a later
transaction never gets a smaller position (DESIGN §4). A *short* page only says what was
visible when it was read: it is served only to cursors that were open before that read began
(had they read themselves, they could have got the same answer), so that a cursor opened after
an append never takes an older "that was the end" for its own.

Cursors move at their projection's pace. Pages are kept while a cursor still needs them; a
cursor more than ``window`` pages ahead of the slowest one waits for it (briefly: a cursor that
does not move within ``wait_seconds`` is passed, and reads its own pages from then on), so the
memory held stays a few pages and the projections keep reading the same pages.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

from acci.eventstore.records import Position, RecordedEvent
from acci.eventstore.store import EventStore

PAGE_SIZE: Final = 2_000
"""Events read at a time (a ``read_all`` costs about as much to plan for 500 events as for
2,000)."""

WINDOW: Final = 4
"""Pages a cursor may read ahead of the slowest cursor before it waits for it."""

WAIT_SECONDS: Final = 3.0
"""How long a cursor that does not move still holds the others back (a runner applies a page
well within it; one that is stuck is then passed, and reads on by itself when it moves)."""

_LOGS: Final[weakref.WeakKeyDictionary[EventStore, SharedLog]] = weakref.WeakKeyDictionary()


def _position(event: RecordedEvent) -> Position:
    return Position(event.transaction_id, event.global_position)


@dataclass(eq=False)
class _Page:
    """One ``read_all`` of up to ``size`` events from ``after``: in flight, then read."""

    after: Position
    size: int
    seq: int  # the log's read counter when this read began
    task: asyncio.Task[list[RecordedEvent]]

    @property
    def done(self) -> bool:
        return self.task.done()

    @property
    def ok(self) -> bool:
        """Read without error."""
        return self.task.done() and not self.task.cancelled() and self.task.exception() is None

    @property
    def full(self) -> bool:
        """Read, and as many events as asked for: more may follow."""
        return self.ok and len(self.task.result()) == self.size

    @property
    def end(self) -> Position:
        """The position of the last event read (``after`` for none; in flight: ``after``)."""
        events = self.task.result() if self.ok else None
        return _position(events[-1]) if events else self.after

    def serves(self, cursor: LogCursor) -> bool:
        """Whether this page's answer may be ``cursor``'s (see the module's docstring)."""
        if not self.done:
            return True  # whether it is short is known once read: checked again then
        return self.ok and (self.full or self.seq > cursor.since)


@dataclass(eq=False)
class LogCursor:
    """One runner's place in a ``SharedLog``: the events after ``after``, a page at a time."""

    _log: SharedLog
    after: Position
    since: int  # the log's read counter when this cursor (re)started
    moved_at: float
    _buffer: list[RecordedEvent] = field(default_factory=list)
    _more: bool = True  # the page last taken was full: events may follow it

    async def next(self, limit: int) -> list[RecordedEvent]:
        """Up to ``limit`` events after the last ones returned; [] when none are visible."""
        if not self._buffer:
            if not self._more:
                return []
            events, full = await self._log.take(self)
            if not events:
                self._more = False
                return []
            self._buffer, self._more = events, full
            self._log.moved(self, _position(events[-1]))
            if full:
                self._log.read_ahead(self)
        events, self._buffer = self._buffer[:limit], self._buffer[limit:]
        return events

    def restart(self, after: Position) -> None:
        """Drop what is held; read from ``after`` next."""
        self._buffer, self._more, self.since = [], True, self._log.clock
        self._log.moved(self, after)


class SharedLog:
    """Pages of the global order shared by the projection runners of one process."""

    def __init__(
        self,
        store: EventStore,
        *,
        page_size: int = PAGE_SIZE,
        window: int = WINDOW,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        # Held weakly: the store's own log (``of``) must not keep the store alive. The runners
        # reading through a log hold its store.
        self._store = weakref.ref(store)
        self._page_size = page_size
        self._window = window
        self._wait_seconds = wait_seconds
        self._pages: list[_Page] = []
        self._cursors: list[LogCursor] = []
        self._moved = asyncio.Event()
        self.clock = 0
        # What sharing saved: pages read, and events handed to cursors (over pages' events).
        self.reads = 0
        self.events_served = 0

    @classmethod
    def of(cls, store: EventStore) -> SharedLog:
        """The log every runner over ``store`` shares unless it is given its own."""
        log = _LOGS.get(store)
        if log is None:
            log = _LOGS[store] = cls(store)
        return log

    @property
    def page_size(self) -> int:
        return self._page_size

    @contextlib.asynccontextmanager
    async def cursor(self, after: Position) -> AsyncIterator[LogCursor]:
        """A cursor reading from ``after`` for as long as the block runs."""
        cursor = LogCursor(self, after, self.clock, _now())
        self._cursors.append(cursor)
        try:
            yield cursor
        finally:
            self._cursors.remove(cursor)
            self._changed()
            if not self._cursors:
                await self._drop_all()

    def moved(self, cursor: LogCursor, after: Position) -> None:
        """``cursor`` reads from ``after`` now: pages every cursor passed go, and cursors
        waiting for a slower one look again."""
        cursor.after, cursor.moved_at = after, _now()
        self._changed()

    async def take(self, cursor: LogCursor) -> tuple[list[RecordedEvent], bool]:
        """The events after ``cursor.after`` of a page that holds them (read now if none
        does), and whether that page was full."""
        while True:
            page = self._serving(cursor)
            if page is None:
                await self._wait_for_slower(cursor)
                page = self._serving(cursor) or self._read(cursor.after)
            events = await asyncio.shield(page.task)
            if page.serves(cursor):
                break
            # A short page read before this cursor (re)started: not its answer; read afresh.
        taken = events[bisect.bisect_right(events, cursor.after, key=_position) :]
        self.events_served += len(taken)
        return taken, page.full

    def read_ahead(self, cursor: LogCursor) -> None:
        """Read the page after ``cursor``'s, while it applies this one, unless it is too far
        ahead of the others or that page is read already."""
        if self._serving(cursor) is None and not self._ahead(cursor):
            self._read(cursor.after)

    def _serving(self, cursor: LogCursor) -> _Page | None:
        """A page read, or being read, that holds the events right after the cursor."""
        at = cursor.after
        best: _Page | None = None
        for page in self._pages:
            if not page.serves(cursor):
                continue
            if page.after == at:
                return page  # read from exactly here (in flight, or read)
            if page.done and page.after < at < page.end and (best is None or page.end > best.end):
                best = page
        return best

    async def _wait_for_slower(self, cursor: LogCursor) -> None:
        """Wait (a while) while this cursor is ``window`` pages ahead of a slower one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_seconds
        while (remaining := deadline - loop.time()) > 0 and self._ahead(cursor):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), remaining)

    def _slowest(self) -> Position | None:
        """Where the slowest cursor that moved lately reads (a stuck one holds nobody back)."""
        recent = _now() - self._wait_seconds
        live = [c.after for c in self._cursors if c.moved_at >= recent]
        return min(live) if live else None

    def _ahead(self, cursor: LogCursor) -> bool:
        slowest = self._slowest()
        if slowest is None or cursor.after <= slowest:
            return False  # the slowest never waits
        return sum(1 for p in self._pages if not p.done or p.end > slowest) >= self._window

    def _read(self, after: Position) -> _Page:
        store = self._store()
        assert store is not None, "a log is read by runners, which hold its store"
        self.clock += 1
        self.reads += 1
        task = asyncio.create_task(store.read_all(after, limit=self._page_size))
        page = _Page(after, self._page_size, self.clock, task)
        task.add_done_callback(lambda _: self._read_done(page))
        self._pages.append(page)
        return page

    def _read_done(self, page: _Page) -> None:
        if page.ok:
            return
        # Failed or cancelled: forgotten, so that the next cursor to get here reads again (the
        # cursors awaiting it get its error). Retrieving it keeps asyncio from logging it.
        if not page.task.cancelled():
            page.task.exception()
        with contextlib.suppress(ValueError):
            self._pages.remove(page)

    def _changed(self) -> None:
        """Forget the pages every lately-moved cursor has passed; wake the waiting cursors."""
        slowest = self._slowest()
        if slowest is not None:
            self._pages = [p for p in self._pages if not p.done or p.end > slowest]
        self._moved.set()
        self._moved = asyncio.Event()

    async def _drop_all(self) -> None:
        """No cursor left: stop the reads ahead and forget every page."""
        pages, self._pages = self._pages, []
        for page in pages:
            page.task.cancel()
        for page in pages:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await page.task


def _now() -> float:
    return asyncio.get_running_loop().time()
