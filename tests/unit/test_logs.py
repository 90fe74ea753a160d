"""The JSON log lines: a rejected command is one line without a traceback, a fault keeps its own;
the bound context and the trace ids on each line, no password on any, log files rotated."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from temporalio.exceptions import ApplicationError

from acci.workers.logs import bind_context, configure_logging, log_context, redact


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


def _logged(monkeypatch: pytest.MonkeyPatch, emit: Callable[[], None]) -> list[dict[str, object]]:
    """The JSON lines ``emit`` writes through the configured handler."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        emit()
    finally:
        root.handlers[:], root.level = handlers, level
    return [json.loads(line) for line in stderr.getvalue().splitlines()]


def test_lines_carry_the_context_bound_for_the_unit_of_work_and_only_inside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = logging.getLogger("acci.test")

    def emit() -> None:
        with log_context(command_id="c-1", tenant_id="acme"):
            log.info("inside")
            log.info("own field wins", extra={"tenant_id": "globex"})
        log.info("outside")

    inside, own, outside = _logged(monkeypatch, emit)
    assert (inside["command_id"], inside["tenant_id"]) == ("c-1", "acme")
    assert own["tenant_id"] == "globex"
    assert "command_id" not in outside


def test_a_task_started_inside_the_context_inherits_it(monkeypatch: pytest.MonkeyPatch) -> None:
    log = logging.getLogger("acci.test")

    async def unit() -> None:
        bind_context(run_id="r-1")
        await asyncio.create_task(asyncio.to_thread(log.info, "in a thread of a task"))

    def emit() -> None:
        asyncio.run(unit())
        log.info("after the unit")

    inner, after = _logged(monkeypatch, emit)
    assert inner["run_id"] == "r-1"
    assert "run_id" not in after


def test_lines_carry_the_trace_and_span_ids_only_when_a_span_is_recording(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = logging.getLogger("acci.test")
    tracer = TracerProvider().get_tracer("acci.test")

    def emit() -> None:
        log.info("untraced")
        with tracer.start_as_current_span("command") as span:
            context = span.get_span_context()
            log.info("traced", extra={"expected": [context.trace_id, context.span_id]})

    untraced, traced = _logged(monkeypatch, emit)
    assert "trace_id" not in untraced and "span_id" not in untraced
    trace_id, span_id = traced["expected"]  # type: ignore[misc]
    assert traced["trace_id"] == format(trace_id, "032x")
    assert traced["span_id"] == format(span_id, "016x")


@pytest.mark.parametrize(
    "text",
    [
        "could not connect to postgresql://acci:hunter2@db:5432/acci",
        "amqp://guest:hunter2@rabbit:5672/%2F refused",
        "redis://:hunter2@cache:6379/0 timed out",
        "conninfo host=db password=hunter2 dbname=acci",
        "conninfo host=db password='hunter2' dbname=acci",
    ],
)
def test_no_password_reaches_a_line(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    (line,) = _logged(monkeypatch, lambda: logging.getLogger("acci.test").warning(text))
    assert "hunter2" not in json.dumps(line)
    assert "***" in str(line["msg"])
    assert redact("postgresql://acci@db/acci") == "postgresql://acci@db/acci"


def test_a_log_file_rotates_at_its_size_keeping_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "acci.log"
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO", path=path, max_bytes=2_000, backups=2)
        for i in range(200):
            logging.getLogger("acci.test").info("line %d", i)
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = handlers, level
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["acci.log", "acci.log.1", "acci.log.2"]
    assert all(p.stat().st_size <= 2_000 for p in tmp_path.iterdir())
    assert json.loads(path.read_text().splitlines()[-1])["msg"] == "line 199"
