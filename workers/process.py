"""The worker process's garbage collector, set up once the worker's modules are imported.

A projection catching up or a rebuild allocates a few container objects per event (rows, dicts,
changes) that live for a batch or two. Under CPython's default thresholds (700, 10, 10) those
survivors set off a full collection every few batches, and each full collection walked every
object the imports left behind (about 140,000 in a worker: temporalio, pydantic, SQLAlchemy;
~40 ms each). Measured on 40,000 events (``bench/readside_bench.py``'s generator, 50 tenants):
the collector was about 40 % of a catch-up's CPU, all three projections together 16,000 events/s
before and 26,000-28,000 after ``tune_gc``.

``tune_gc`` moves what start-up made into the permanent generation (``gc.freeze``: never
traversed again; reference counting still frees it) and collects the young generation every
``YOUNG_THRESHOLD`` allocations instead of 700. Cycles are still collected; they wait a little
longer. Only process entry points call it (``acci worker``, ``acci dev``, the benchmarks that
measure the worker's paths): a library user's process keeps its own settings.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 50_000
"""Allocations (less deallocations) of container objects between young collections."""

OLDER_THRESHOLDS: Final = (20, 20)
"""Young collections per middle one, middle ones per full one (CPython's default: 10, 10)."""


def tune_gc() -> None:
    """Freeze what is alive now, and collect the young generation less often (see above)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
