"""Payload encryption: append, load and read_all with encryption off vs on, in the same run.

Two fresh databases on the same server (``acci_bench_enc_off``, ``acci_bench_enc_on``), the same
work in each, interleaved so that both see the same machine:

* append: N single-event appends (one command each, ~300-byte payload), sequential; p50 and
  appends per second. With encryption on, each event's data is sealed (AES-256-GCM) with the
  tenant's cached data key; the key itself was created by the tenant's first append.
* load: the load of one 10,000-event stream (``--quick``: 2,000) as the repository reads it
  (``read_tail``, then each event decoded by the registry), p50 of 15.
* read_all: every event in the database in the gap-free global order, pages of 1,000, decoded;
  events per second (median of 7 runs, interleaved).

Ratios are on / off (1.00 = no cost). The data key cache is warm (as in a worker); unwrapping a
key costs one query per tenant per cache TTL.

Run: ``.venv/bin/python bench/encryption_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any, ClassVar

from harness import database_url, percentile, recreate_database

from acci.domain.events import DomainEvent
from acci.domain.registry import EventRegistry
from acci.eventstore.db import create_pool
from acci.eventstore.encryption import OFF, PayloadEncryption
from acci.eventstore.keyring import KeyRing
from acci.eventstore.keys import LocalKeyWrapper, master_key_bytes, new_master_key
from acci.eventstore.loading import read_tail
from acci.eventstore.records import START, NewEvent, StreamAppend
from acci.eventstore.store import EventStore
from acci.readmodels.schema import prepare_database

SERVER = os.environ.get("ACCI_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432")
registry = EventRegistry()


@registry.register
class Noted(DomainEvent):
    """The bench's event: a line of text and a few fields."""

    event_type: ClassVar[str] = "Noted"
    event_version: ClassVar[int] = 1
    text: str
    author: str
    tags: list[str]


def event(i: int) -> NewEvent:
    data = {
        "text": f"note {i} " + "lorem ipsum dolor sit amet " * 8,
        "author": "ada@example.com",
        "tags": ["a", "b", "c"],
    }
    return NewEvent("Noted", 1, data)


class Side:
    """One database and its store, encryption off or on."""

    def __init__(self, name: str, encrypt: bool) -> None:
        self.name, self.encrypt = name, encrypt
        self.url = database_url(SERVER, name)

    async def open(self) -> None:
        recreate_database(SERVER, self.name)
        self.pool = create_pool(self.url, min_size=2, max_size=4)
        await self.pool.open()
        await prepare_database(self.pool)
        wrapper = LocalKeyWrapper("bench", master_key_bytes(new_master_key()))
        encryption = (
            PayloadEncryption(KeyRing(self.pool, wrapper, cache_ttl=3600), encrypt=True)
            if self.encrypt
            else OFF
        )
        self.store = EventStore(self.pool, registry=registry, encryption=encryption)

    async def fill_long_stream(self, events: int) -> None:
        for start in range(0, events, 1_000):
            batch = tuple(event(i) for i in range(start, min(events, start + 1_000)))
            await self.store.append_many(
                [StreamAppend("bench", "long", "Note", batch, uuid.uuid4())]
            )

    async def append_once(self, i: int) -> float:
        began = time.perf_counter()
        await self.store.append("bench", f"s{i % 50}", "Note", [event(i)], command_id=uuid.uuid4())
        return time.perf_counter() - began

    async def load_once(self) -> float:
        began = time.perf_counter()
        tail = await read_tail(
            self.pool,
            "bench",
            "long",
            "Note",
            schema_version=None,
            encryption=self.store.encryption,
        )
        for _, event_type, version, data, _ in tail.events():
            registry.decode_json(event_type, version, data)
        return time.perf_counter() - began

    async def read_all_once(self) -> tuple[int, float]:
        began, after, count = time.perf_counter(), START, 0
        while page := await self.store.read_all(after, limit=1_000):
            for e in page:
                registry.decode(e.event_type, e.event_version, e.data)
            count += len(page)
            after = page[-1].position
        return count, time.perf_counter() - began


async def main(quick: bool) -> None:
    long, appends, loads = (2_000, 300, 7) if quick else (10_000, 1_000, 15)
    reads_n = 3 if quick else 7
    off, on = Side("acci_bench_enc_off", False), Side("acci_bench_enc_on", True)
    results: dict[str, dict[str, Any]] = {}
    for side in (off, on):
        await side.open()
        await side.fill_long_stream(long)
        await side.append_once(-1)  # warm: statements prepared, the data key created
    times: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(appends):  # interleaved: both sides see the same machine
        for side in (off, on):
            times["on" if side.encrypt else "off"].append(await side.append_once(i))
    load_times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(loads):
        for side in (off, on):
            load_times["on" if side.encrypt else "off"].append(await side.load_once())
    reads: dict[str, list[tuple[int, float]]] = {"off": [], "on": []}
    for _ in range(reads_n):  # interleaved too
        for side in (off, on):
            reads["on" if side.encrypt else "off"].append(await side.read_all_once())
    for side in (off, on):
        key = "on" if side.encrypt else "off"
        count = reads[key][0][0]
        results[key] = {
            "append_p50_ms": percentile(times[key], 50) * 1000,
            "appends_per_s": len(times[key]) / sum(times[key]),
            "load_p50_ms": statistics.median(load_times[key]) * 1000,
            "read_all_events_per_s": count / statistics.median(t for _, t in reads[key]),
            "events": count,
        }
        await side.pool.close()
    a, b = results["off"], results["on"]
    print(
        f"encryption bench: {appends} appends, a {long}-event stream load (p50 of {loads}),"
        f" read_all of {a['events']} events (median of {reads_n})"
    )
    print(f"{'measure':<28}{'off':>12}{'on':>12}{'on/off':>10}")
    rows = [
        ("append p50 (ms)", "append_p50_ms"),
        ("appends/s (sequential)", "appends_per_s"),
        (f"load {long} events p50 (ms)", "load_p50_ms"),
        ("read_all events/s", "read_all_events_per_s"),
    ]
    for label, field in rows:
        print(f"{label:<28}{a[field]:>12.2f}{b[field]:>12.2f}{b[field] / a[field]:>10.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (about 20 s)")
    asyncio.run(main(parser.parse_args().quick))
