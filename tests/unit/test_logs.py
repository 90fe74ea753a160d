"""The JSON log lines: a rejected command is one line without a traceback, a fault keeps its own."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from temporalio.exceptions import ApplicationError

from acci.workers.logs import configure_logging


def _logged_failure(error: Exception, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """What the Temporal SDK's 'activity failed' warning looks like on stderr."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        try:
            raise error
        except Exception:
            logging.getLogger("temporalio.activity").warning(
                "Completing activity as failed", exc_info=True
            )
    finally:
        root.handlers[:], root.level = handlers, level
    (line,) = stderr.getvalue().splitlines()
    entry = json.loads(line)
    assert isinstance(entry, dict)
    return entry


def test_a_rejected_command_is_logged_as_one_line_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rejected = ApplicationError("tenant 't' is suspended", type="DomainError", non_retryable=True)
    entry = _logged_failure(rejected, monkeypatch)
    assert "exc" not in entry
    assert (entry["error_type"], entry["error"]) == ("DomainError", "tenant 't' is suspended")


def test_a_failure_that_is_retried_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    outage = ApplicationError("event store unavailable", type="PersistenceError")
    entry = _logged_failure(outage, monkeypatch)
    assert "Traceback" in str(entry["exc"])
