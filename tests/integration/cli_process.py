"""The `acci` CLI run as a process of its own, as a user runs it (the integration tests' door)."""

from __future__ import annotations

import subprocess
import sys


def acci(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`acci ARGS…` with ``env``; its exit status and output, whatever they are."""
    return subprocess.run(
        [sys.executable, "-m", "acci.workers.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
