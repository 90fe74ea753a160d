"""The worker process's garbage collector (``workers/process.py``), each case in a fresh
interpreter so that this test process keeps its own settings."""

from __future__ import annotations

import subprocess
import sys

from acci.workers.process import OLDER_THRESHOLDS, YOUNG_THRESHOLD


def _run(code: str) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return [int(word) for word in done.stdout.split()]


def test_tune_gc_freezes_what_start_up_made_and_collects_the_young_less_often() -> None:
    frozen, young, middle, full, collected = _run(
        "import gc\n"
        "import acci.workers.worker\n"
        "from acci.workers.process import tune_gc\n"
        "tune_gc()\n"
        "a = []; a.append(a); del a\n"  # a cycle made after the freeze is still collected
        "print(gc.get_freeze_count(), *gc.get_threshold(), gc.collect())\n"
    )
    assert frozen > 10_000  # the worker's modules: temporalio, pydantic, SQLAlchemy, ...
    assert (young, middle, full) == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    assert collected >= 1


def test_importing_acci_leaves_a_library_users_collector_alone() -> None:
    frozen, *thresholds = _run(
        "import gc\n"
        "before = gc.get_threshold()\n"
        "import acci.workers.worker, acci.workers.cli\n"
        "assert gc.get_threshold() == before\n"
        "print(gc.get_freeze_count(), *gc.get_threshold())\n"
    )
    assert frozen == 0
    assert thresholds[0] < YOUNG_THRESHOLD
