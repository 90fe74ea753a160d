"""The shared log: projections catching up together read each page of the global order once."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from acci.domain.registry import EventRegistry
from acci.eventstore.errors import EventStoreValidationError
from acci.eventstore.records import RecordedEvent
from acci.eventstore.store import EventStore
from acci.readmodels.shared_log import LogCursor, SharedLog
from tests.integration import events


async def append_noted(store: EventStore, count: int) -> list[RecordedEvent]:
    """``count`` Noted events of a new tenant, a few per append; the events as stored."""
    tenant = f"log-{uuid.uuid4().hex[:8]}"
    for start in range(0, count, 3):
        batch = [events.noted(f"n{i}") for i in range(start, min(start + 3, count))]
        await store.append(tenant, "notes", "Notebook", batch, command_id=uuid.uuid4())
    return await store.read_stream(tenant, "notes")


async def everything(cursor: LogCursor, limit: int = 2) -> list[RecordedEvent]:
    """What the cursor returns until it has nothing more."""
    out: list[RecordedEvent] = []
    while batch := await cursor.next(limit):
        out.extend(batch)
    return out


def ids(found: list[RecordedEvent]) -> list[uuid.UUID]:
    return [e.event_id for e in found]


@pytest.fixture
def log(test_store: EventStore) -> SharedLog:
    return SharedLog(test_store, page_size=5)


async def test_cursors_at_the_same_place_read_each_page_once(
    test_store: EventStore, log: SharedLog
) -> None:
    start = await test_store.readable_head()
    stored = await append_noted(test_store, 23)

    async def reader() -> list[RecordedEvent]:
        async with log.cursor(start) as cursor:
            return await everything(cursor)

    found = await asyncio.gather(reader(), reader(), reader())
    assert [ids(f) for f in found] == [ids(stored)] * 3
    assert log.reads == math.ceil(23 / 5)  # four full pages, one short: each read once
    assert log.events_served == 3 * 23


async def test_a_cursor_inside_a_page_gets_only_the_events_after_its_position(
    test_store: EventStore, log: SharedLog
) -> None:
    start = await test_store.readable_head()
    stored = await append_noted(test_store, 12)
    async with log.cursor(start) as first, log.cursor(stored[2].position) as second:
        assert ids(await first.next(5)) == ids(stored[:5])
        reads = log.reads
        assert ids(await second.next(2)) == ids(stored[3:5])  # from the page first read
        assert log.reads == reads
        assert ids(await everything(second)) == ids(stored[5:])
        assert ids(await everything(first)) == ids(stored[5:])


async def test_a_cursor_opened_after_an_append_does_not_take_an_older_end_for_its_own(
    test_store: EventStore, log: SharedLog
) -> None:
    start = await test_store.readable_head()
    stored = await append_noted(test_store, 3)
    async with log.cursor(start) as early:
        assert ids(await everything(early)) == ids(stored)  # a short page: the end, then
        later = await append_noted(test_store, 2)
        async with log.cursor(start) as late:
            assert ids(await everything(late)) == ids(stored + later)
        assert await early.next(5) == []  # it reached the end it saw; restarted, it reads on
        early.restart(stored[-1].position)
        assert ids(await everything(early)) == ids(later)


async def test_a_cursor_far_ahead_waits_for_a_slower_one_and_passes_one_that_does_not_move(
    test_store: EventStore,
) -> None:
    log = SharedLog(test_store, page_size=2, window=1, wait_seconds=0.2)
    start = await test_store.readable_head()
    stored = await append_noted(test_store, 10)
    async with log.cursor(start) as slow, log.cursor(start) as fast:
        assert ids(await slow.next(1)) == ids(stored[:1])
        # slow holds its page and stops: fast goes on once slow has not moved for a while.
        assert ids(await everything(fast)) == ids(stored)
        assert ids(await everything(slow)) == ids(stored[1:])


async def test_an_unreadable_page_fails_every_cursor_that_needs_it_and_is_read_again(
    pool: AsyncConnectionPool, test_store: EventStore
) -> None:
    start = await test_store.readable_head()
    tenant = f"log-{uuid.uuid4().hex[:8]}"
    await test_store.append(tenant, "c", "Counter", [events.counted(1)], command_id=uuid.uuid4())
    # A store whose registry does not know "Counted" cannot read that event.
    narrow = EventRegistry()
    narrow.register(events.Noted)
    log = SharedLog(EventStore(pool, registry=narrow), page_size=5)
    async with log.cursor(start) as one, log.cursor(start) as two:
        failures = await asyncio.gather(one.next(5), two.next(5), return_exceptions=True)
        assert all(isinstance(f, EventStoreValidationError) for f in failures)
        with pytest.raises(EventStoreValidationError):
            await one.next(5)
    assert log.reads == 2  # the failed page was not kept: the second attempt read again


async def test_pages_are_forgotten_when_the_last_cursor_closes(
    test_store: EventStore, log: SharedLog
) -> None:
    start = await test_store.readable_head()
    stored = await append_noted(test_store, 7)
    for expected_reads in (2, 4):
        async with log.cursor(start) as cursor:
            assert ids(await everything(cursor)) == ids(stored)
        assert log.reads == expected_reads


async def test_every_runner_over_one_store_shares_one_log_by_default(
    test_store: EventStore,
) -> None:
    assert SharedLog.of(test_store) is SharedLog.of(test_store)
    other = EventStore(test_store.pool, registry=events.registry)
    assert SharedLog.of(other) is not SharedLog.of(test_store)
